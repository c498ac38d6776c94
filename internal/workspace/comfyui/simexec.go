package comfyui

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	_ "image/jpeg" // the poster is drawn as JPEG and saved as PNG

	"github.com/coder/websocket"

	"gooni/internal/workspace"
)

// execLoop runs queued prompts one at a time, lowest number first.
func (s *Sim) execLoop() {
	defer close(s.execDone)
	for {
		s.mu.Lock()
		var p *simPrompt
		if len(s.queue) > 0 {
			p, s.queue = s.queue[0], s.queue[1:]
			s.running = p
			s.lastNode = ""
			s.broadcastLocked("status", map[string]any{"status": s.queueInfoLocked()})
		}
		boot := s.boot
		s.mu.Unlock()
		if p == nil {
			select {
			case <-s.wake:
				continue
			case <-s.stop:
				return
			}
		}
		s.run(p, boot)
		select {
		case <-s.stop:
			return
		default:
		}
	}
}

// run executes one prompt as execution.py PromptExecutor.execute_async does,
// message for message, taking Duration over its sampler steps.
func (s *Sim) run(p *simPrompt, boot uint64) {
	var messages [][2]any // status messages kept in the history entry
	add := func(kind string, data map[string]any) {
		data["timestamp"] = s.now().UnixMilli()
		messages = append(messages, [2]any{kind, data})
		s.sendLocked(p.clientID, kind, data)
	}
	order := execOrder(p.graph, p.outputs)
	sigs := signatures(p.graph)

	s.mu.Lock()
	if s.boot != boot {
		s.mu.Unlock()
		return
	}
	add("execution_start", map[string]any{"prompt_id": p.id})
	var cached []string
	for _, id := range sortedKeys(p.graph) {
		if sig, ok := s.cache[id]; ok && sig == sigs[id] {
			cached = append(cached, id)
		}
	}
	add("execution_cached", map[string]any{"nodes": nonNil(cached), "prompt_id": p.id})
	prevUI := s.cacheUI
	s.mu.Unlock()

	total := 0
	for _, id := range order {
		if samplerClasses[classOf(p.graph, id)] && !slices.Contains(cached, id) {
			total += samplerSteps(p.graph, id)
		}
	}
	stepDur := s.cfg.Duration
	if total > 0 {
		stepDur = s.cfg.Duration / time.Duration(total)
	}
	half := max(1, total/2)
	done := 0
	executed := []string{}
	ui := map[string]any{}
	newCache := map[string]string{}
	newUI := map[string]any{}

	// end finishes the prompt: history entry, cache, and the final executing message.
	end := func(status string, extra [][2]any) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.boot != boot {
			return
		}
		for _, m := range extra {
			data := m[1].(map[string]any)
			data["timestamp"] = s.now().UnixMilli()
			messages = append(messages, m)
			s.sendLocked(p.clientID, m[0].(string), data)
		}
		meta := map[string]any{}
		for id := range ui {
			meta[id] = map[string]any{"node_id": id, "display_node": id, "parent_node": nil, "real_node_id": id}
		}
		entry := map[string]any{
			"prompt":  p.item(),
			"outputs": ui,
			"status":  map[string]any{"status_str": status, "completed": status == "success", "messages": messages},
			"meta":    meta,
		}
		if _, exists := s.history[p.id]; !exists {
			s.histOrder = append(s.histOrder, p.id)
		}
		s.history[p.id] = entry
		for len(s.histOrder) > simMaxHistory {
			delete(s.history, s.histOrder[0])
			s.histOrder = s.histOrder[1:]
		}
		if status == "success" {
			s.completed[p.id]++
		}
		s.cache, s.cacheUI = newCache, newUI
		s.running = nil
		s.lastNode = ""
		if s.wsBlocked == p.id {
			s.wsBlocked = ""
		}
		s.broadcastLocked("status", map[string]any{"status": s.queueInfoLocked()})
		s.sendLocked(p.clientID, "executing", map[string]any{"node": nil, "prompt_id": p.id})
	}

	// fault fires the configured fault halfway through; false = the prompt ends here.
	faultFired := false
	fault := func(nodeID string) bool {
		if faultFired {
			return true
		}
		faultFired = true
		ct := classOf(p.graph, nodeID)
		switch s.cfg.Fault {
		case FaultExecError:
			end("error", [][2]any{{"execution_error", s.errorMessage(p, nodeID, ct, executed,
				"RuntimeError", "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!\n")}})
			return false
		case FaultOOM:
			end("error", [][2]any{{"execution_error", s.errorMessage(p, nodeID, ct, executed,
				"torch.OutOfMemoryError", "Allocation on device \nThis error means you ran out of memory on your GPU.\n\nTIPS: If the workflow worked before you might have accidentally set the batch_size to a large number.")}})
			return false
		case FaultInterrupt:
			p.stopIt()
		case FaultRestart:
			s.mu.Lock()
			if !s.restarted {
				s.restarted = true
				s.boot++
				s.queue, s.running, s.lastNode = nil, nil, ""
				s.history, s.histOrder = map[string]map[string]any{}, nil
				s.cache, s.cacheUI = map[string]string{}, map[string]any{}
				s.number = 0
				s.closeSocketsLocked()
				s.mu.Unlock()
				return false
			}
			s.mu.Unlock()
		case FaultWSDrop:
			s.mu.Lock()
			s.wsBlocked = p.id
			s.closeSocketsLocked()
			s.mu.Unlock()
		}
		return true
	}

	interrupted := func(nodeID string) {
		end("error", [][2]any{{"execution_interrupted", map[string]any{
			"prompt_id": p.id, "node_id": nodeID, "node_type": classOf(p.graph, nodeID), "executed": nonNil(executed)}}})
	}

	for _, id := range order {
		ct := classOf(p.graph, id)
		if slices.Contains(cached, id) {
			newCache[id] = sigs[id]
			if out, ok := prevUI[id]; ok {
				ui[id] = out
				newUI[id] = out
				s.mu.Lock()
				s.sendLocked(p.clientID, "executed", map[string]any{"node": id, "display_node": id, "output": out, "prompt_id": p.id})
				s.mu.Unlock()
			}
			continue
		}
		s.mu.Lock()
		if s.boot != boot {
			s.mu.Unlock()
			return
		}
		s.lastNode = id
		s.sendLocked(p.clientID, "executing", map[string]any{"node": id, "display_node": id, "prompt_id": p.id})
		s.mu.Unlock()
		if samplerClasses[ct] {
			steps := samplerSteps(p.graph, id)
			for i := 1; i <= steps; i++ {
				select {
				case <-s.after(stepDur):
				case <-p.interrupt:
					interrupted(id)
					return
				case <-s.stop:
					return
				}
				done++
				if done >= half && s.cfg.Fault != FaultNone && s.cfg.Fault != FaultValidation && s.cfg.Fault != FaultOldVersion {
					if !fault(id) {
						return
					}
				}
				select {
				case <-p.interrupt:
					interrupted(id)
					return
				default:
				}
				s.mu.Lock()
				if s.boot != boot {
					s.mu.Unlock()
					return
				}
				s.sendLocked(p.clientID, "progress", map[string]any{"value": i, "max": steps, "prompt_id": p.id, "node": id})
				if sock, ok := s.sockets[p.clientID]; ok {
					sock.push(s.previewFrame())
				}
				s.mu.Unlock()
			}
		}
		if total == 0 && id == order[len(order)-1] {
			select {
			case <-s.after(stepDur):
			case <-p.interrupt:
				interrupted(id)
				return
			case <-s.stop:
				return
			}
		}
		if out := s.save(p, id, ct); out != nil {
			ui[id] = out
			newUI[id] = out
			s.mu.Lock()
			s.sendLocked(p.clientID, "executed", map[string]any{"node": id, "display_node": id, "output": out, "prompt_id": p.id})
			s.mu.Unlock()
		}
		executed = append(executed, id)
		newCache[id] = sigs[id]
	}
	end("success", [][2]any{{"execution_success", map[string]any{"prompt_id": p.id}}})
}

// errorMessage is the data of execution_error (execution.py handle_execution_error).
func (s *Sim) errorMessage(p *simPrompt, nodeID, ct string, executed []string, excType, excMsg string) map[string]any {
	return map[string]any{
		"prompt_id": p.id, "node_id": nodeID, "node_type": ct, "executed": nonNil(executed),
		"exception_message": excMsg, "exception_type": excType,
		"traceback": []string{
			"  File \"/ComfyUI/execution.py\", line 496, in execute\n    output_data, output_ui, has_subgraph, has_pending_tasks = await get_output_data(prompt_id, unique_id, obj, input_data_all, execution_block_cb=execution_block_cb, pre_execute_cb=pre_execute_cb, v3_data=v3_data)\n",
			"  File \"/ComfyUI/comfy/samplers.py\", line 1042, in sample\n    return sampler.sample(self, noise, positive, negative, cfg=cfg)\n",
		},
		"current_inputs":  map[string]any{"seed": []any{inputOf(p.graph, nodeID, "seed")}, "steps": []any{inputOf(p.graph, nodeID, "steps")}},
		"current_outputs": nonNil(executed),
	}
}

// previewFrame is a binary preview as server.py send_image sends it: event
// PREVIEW_IMAGE (1) and image type JPEG (1), big-endian, then the image.
func (s *Sim) previewFrame() simFrame {
	b := make([]byte, 8, 8+len(s.preview))
	binary.BigEndian.PutUint32(b[0:4], 1)
	binary.BigEndian.PutUint32(b[4:8], 1)
	return simFrame{typ: websocket.MessageBinary, data: append(b, s.preview...)}
}

// save makes an output node's files and returns its ui output, or nil for other nodes.
func (s *Sim) save(p *simPrompt, id, ct string) map[string]any {
	if ct != "SaveImage" && ct != "SaveVideo" {
		return nil
	}
	req := renderRequest(p.graph, id)
	ext, ctype := ".png", "image/png"
	render := func() ([]byte, error) {
		m, err := workspace.RenderMedia(req)
		if err != nil {
			return nil, err
		}
		if req.Type == "video" {
			return jpegToPNG(m.Preview) // a still of a video workflow: its poster, as SaveImage writes PNG
		}
		return m.Result, nil
	}
	if ct == "SaveVideo" {
		ext, ctype = ".mp4", "video/mp4"
		render = func() ([]byte, error) {
			m, err := workspace.RenderMedia(req)
			if err != nil {
				return nil, err
			}
			return m.Result, nil
		}
	}
	prefix, _ := p.graph[id].(map[string]any)["inputs"].(map[string]any)["filename_prefix"].(string)
	sub, base := path.Split(path.Clean("/" + prefix))
	sub = strings.Trim(sub, "/")
	if prefix == "" || strings.Contains(prefix, "..") || base == "" {
		sub, base = "", "ComfyUI"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := sub + "/" + base
	s.counters[key]++
	name := fmt.Sprintf("%s_%05d_%s", base, s.counters[key], ext)
	fileKey := name
	if sub != "" {
		fileKey = sub + "/" + name
	}
	if _, exists := s.files[fileKey]; !exists {
		s.fileOrder = append(s.fileOrder, fileKey)
	}
	s.files[fileKey] = &simFile{contentType: ctype, render: render}
	for len(s.fileOrder) > simMaxFiles {
		delete(s.files, s.fileOrder[0])
		s.fileOrder = s.fileOrder[1:]
	}
	out := map[string]any{"images": []any{map[string]any{"filename": name, "subfolder": sub, "type": "output"}}}
	if ct == "SaveVideo" {
		out["animated"] = []any{true}
	}
	return out
}

func jpegToPNG(b []byte) ([]byte, error) {
	img, _, err := image.Decode(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.BestSpeed}).Encode(&buf, img); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func samplerSteps(graph map[string]any, id string) int {
	n, ok := asInt(inputOf(graph, id, "steps"))
	if !ok || n < 1 {
		return 1
	}
	return min(n, 10000)
}

// execOrder lists the nodes the outputs need, each after its inputs.
func execOrder(graph map[string]any, outputs []string) []string {
	var order []string
	seen := map[string]bool{}
	var visit func(id string)
	visit = func(id string) {
		if seen[id] {
			return
		}
		seen[id] = true
		n, _ := graph[id].(map[string]any)
		in, _ := n["inputs"].(map[string]any)
		for _, k := range sortedKeys(in) {
			if src, ok := linkOf(graph, id, k); ok {
				if _, exists := graph[src]; exists {
					visit(src)
				}
			}
		}
		order = append(order, id)
	}
	outs := append([]string(nil), outputs...)
	sort.Slice(outs, func(i, j int) bool { return nodeIDLess(outs[i], outs[j]) })
	for _, o := range outs {
		visit(o)
	}
	return order
}

// signatures hash each node's class and inputs, links replaced by the
// signature of the node they point at: equal signatures mean ComfyUI would
// reuse the cached output.
func signatures(graph map[string]any) map[string]string {
	sigs := map[string]string{}
	var sig func(id string, depth int) string
	sig = func(id string, depth int) string {
		if s, ok := sigs[id]; ok {
			return s
		}
		if depth > 64 {
			return "cycle"
		}
		n, _ := graph[id].(map[string]any)
		in, _ := n["inputs"].(map[string]any)
		h := sha256.New()
		h.Write([]byte(classOf(graph, id)))
		for _, k := range sortedKeys(in) {
			h.Write([]byte{0})
			h.Write([]byte(k))
			h.Write([]byte{0})
			if src, ok := linkOf(graph, id, k); ok {
				l := in[k].([]any)
				h.Write([]byte(sig(src, depth+1)))
				fmt.Fprint(h, l[1])
			} else {
				b, _ := json.Marshal(in[k])
				h.Write(b)
			}
		}
		s := hex.EncodeToString(h.Sum(nil))
		sigs[id] = s
		return s
	}
	for id := range graph {
		sig(id, 0)
	}
	return sigs
}

// renderRequest reads what the media should show from the graph, as a
// person reading the workflow would: the positive prompt text, the size of
// the latent, the seed of the sampler that feeds the output node.
func renderRequest(graph map[string]any, outputID string) *workspace.TaskRequest {
	typ := "image"
	for _, id := range sortedKeys(graph) {
		if classOf(graph, id) == "SaveVideo" {
			typ = "video"
		}
	}
	req := &workspace.TaskRequest{Type: typ}
	sampler := upstream(graph, outputID, func(id string) bool { return samplerClasses[classOf(graph, id)] })
	params := map[string]any{}
	if sampler != "" {
		if pos, ok := linkOf(graph, sampler, "positive"); ok {
			req.Prompt = promptText(graph, pos, 0)
		}
		if seed, ok := asFloat(inputOf(graph, sampler, "seed")); ok {
			params["seed"] = seed
		}
		if lat, ok := linkOf(graph, sampler, "latent_image"); ok {
			for _, k := range []string{"width", "height"} {
				if v, ok := asFloat(inputOf(graph, lat, k)); ok {
					params[k] = v
				}
			}
			// A video latent's frame count (EmptyHunyuanLatentVideo,
			// WanImageToVideo: "length").
			if v, ok := asFloat(inputOf(graph, lat, "length")); ok && typ == "video" {
				params["num_frames"] = v
			}
		}
	}
	if typ == "video" {
		// The frame rate the frames are put together at (CreateVideo's "fps").
		if cv := upstream(graph, outputID, func(id string) bool { return classOf(graph, id) == "CreateVideo" }); cv != "" {
			if v, ok := asFloat(inputOf(graph, cv, "fps")); ok {
				params["fps"] = v
			}
		}
	}
	for _, id := range sortedKeys(graph) {
		for _, in := range loaderInputs[classOf(graph, id)] {
			if f, ok := inputOf(graph, id, in).(string); ok && req.Model == "" {
				req.Model = f
			}
		}
	}
	req.Params, _ = json.Marshal(params)
	return req
}

// upstream finds the nearest node above id (breadth first) that match accepts.
func upstream(graph map[string]any, id string, match func(string) bool) string {
	seen := map[string]bool{id: true}
	queue := []string{id}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		n, _ := graph[cur].(map[string]any)
		in, _ := n["inputs"].(map[string]any)
		for _, k := range sortedKeys(in) {
			src, ok := linkOf(graph, cur, k)
			if !ok || seen[src] {
				continue
			}
			if _, exists := graph[src]; !exists {
				continue
			}
			if match(src) {
				return src
			}
			seen[src] = true
			queue = append(queue, src)
		}
	}
	return ""
}

// promptText follows conditioning links up to the CLIPTextEncode that made it.
func promptText(graph map[string]any, id string, depth int) string {
	if depth > 16 {
		return ""
	}
	if classOf(graph, id) == "CLIPTextEncode" {
		s, _ := inputOf(graph, id, "text").(string)
		return s
	}
	for _, k := range []string{"conditioning", "positive"} {
		if src, ok := linkOf(graph, id, k); ok {
			return promptText(graph, src, depth+1)
		}
	}
	return ""
}
