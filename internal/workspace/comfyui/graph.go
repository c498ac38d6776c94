package comfyui

// Helpers that read an API-format graph: node id -> {"class_type", "inputs"}.

// samplerClasses report progress per step.
var samplerClasses = map[string]bool{"KSampler": true, "KSamplerAdvanced": true}

func classOf(graph map[string]any, id string) string {
	n, _ := graph[id].(map[string]any)
	ct, _ := n["class_type"].(string)
	return ct
}

func inputOf(graph map[string]any, id, input string) any {
	n, _ := graph[id].(map[string]any)
	in, _ := n["inputs"].(map[string]any)
	return in[input]
}

// linkOf returns the node a link input points at.
func linkOf(graph map[string]any, id, input string) (string, bool) {
	l, ok := inputOf(graph, id, input).([]any)
	if !ok || len(l) != 2 {
		return "", false
	}
	src, ok := l[0].(string)
	return src, ok
}
