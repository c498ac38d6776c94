package workspace

// RenderedMedia is a simulated task's result and preview, encoded.
type RenderedMedia struct {
	Result      []byte
	ResultType  string // image/png or video/mp4
	Preview     []byte
	PreviewType string // image/jpeg
}

// RenderMedia draws what a simulated workspace returns for a finished task.
// Both simulators (`gooni workspace-sim`, `gooni comfy-sim`) use it, so the
// same task gives the same media whichever fake runs it.
func RenderMedia(req *TaskRequest) (*RenderedMedia, error) {
	m, err := renderMedia(req.Type, req.Prompt, req.Params)
	if err != nil {
		return nil, err
	}
	return &RenderedMedia{Result: m.result, ResultType: m.resultType, Preview: m.preview, PreviewType: m.previewType}, nil
}
