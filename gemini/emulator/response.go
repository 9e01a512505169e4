package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"image/jpeg"
	"image/png"
	"strings"
)

// The GenerateContentResponse, in the member order the real API writes.
type (
	genResponse struct {
		Candidates     []candidate     `json:"candidates,omitempty"`
		PromptFeedback *promptFeedback `json:"promptFeedback,omitempty"`
		UsageMetadata  usage           `json:"usageMetadata"`
		ModelVersion   string          `json:"modelVersion"`
		ResponseID     string          `json:"responseId"`
	}
	candidate struct {
		Content       *respContent `json:"content,omitempty"`
		FinishReason  string       `json:"finishReason"`
		FinishMessage string       `json:"finishMessage,omitempty"`
		Index         int          `json:"index"`
	}
	respContent struct {
		Parts []respPart `json:"parts"`
		Role  string     `json:"role"`
	}
	respPart struct {
		Text       string `json:"text,omitempty"`
		InlineData *blob  `json:"inlineData,omitempty"`
	}
	blob struct {
		MimeType string `json:"mimeType"`
		Data     string `json:"data"`
	}
	promptFeedback struct {
		BlockReason string `json:"blockReason"`
	}
	usage struct {
		PromptTokenCount        int             `json:"promptTokenCount"`
		CandidatesTokenCount    int             `json:"candidatesTokenCount,omitempty"`
		TotalTokenCount         int             `json:"totalTokenCount"`
		PromptTokensDetails     []modalityCount `json:"promptTokensDetails,omitempty"`
		CandidatesTokensDetails []modalityCount `json:"candidatesTokensDetails,omitempty"`
	}
	modalityCount struct {
		Modality   string `json:"modality"`
		TokenCount int    `json:"tokenCount"`
	}
	countResponse struct {
		TotalTokens         int             `json:"totalTokens"`
		PromptTokensDetails []modalityCount `json:"promptTokensDetails,omitempty"`
	}
)

// contentFaults are the answer-shaping faults drawn for one request.
type contentFaults struct {
	malformed, noImage, blocked bool
	fenced, numbers, jpeg       bool
}

// isImageModel reports whether model makes images: its name says "image",
// as every Gemini image model's does.
func isImageModel(model string) bool { return strings.Contains(model, "image") }

func promptDetails(req *request) []modalityCount {
	text, media := req.tokenCounts()
	var d []modalityCount
	if text > 0 {
		d = append(d, modalityCount{"TEXT", text})
	}
	if media > 0 {
		d = append(d, modalityCount{"IMAGE", media})
	}
	return d
}

func responseID(h, seq uint64) string {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], grain(h, int(seq), 1))
	binary.LittleEndian.PutUint64(b[8:], grain(h, int(seq), 2))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// answer builds the response to req; it depends only on req, model, the
// seed, the image scale and cf, plus seq for responseId.
func (e *Emulator) answer(req *request, model string, cf contentFaults, seq uint64) *genResponse {
	texts := req.promptText()
	h := req.hash ^ uint64(e.seed)*0x9e3779b97f4a7c15 ^ hashBytes([]byte(model))
	prompt := req.promptTokens()
	resp := &genResponse{
		ModelVersion:  model,
		ResponseID:    responseID(h, seq),
		UsageMetadata: usage{PromptTokenCount: prompt, TotalTokenCount: prompt, PromptTokensDetails: promptDetails(req)},
	}
	if cf.blocked {
		resp.PromptFeedback = &promptFeedback{BlockReason: "PROHIBITED_CONTENT"}
		return resp
	}
	out := 0
	if req.wantsImage(isImageModel(model)) {
		if cf.noImage {
			resp.Candidates = []candidate{{
				FinishReason:  "IMAGE_SAFETY",
				FinishMessage: "Unable to show the generated image. The image was filtered out because it violated Google's Generative AI Prohibited Use policy.",
			}}
			return resp
		}
		rw, rh, _ := RealImageSize(req.aspectRatio, req.imageSize) // validated before
		w, hh := scaledSize(rw, rh, e.imageScale)
		var parts []respPart
		if len(req.modalities) == 0 || req.wantsModality("TEXT") {
			t := "Here is the image: " + excerpt(texts, 16)
			parts = append(parts, respPart{Text: t})
			out += tokensOf(t)
		}
		data := renderPNG(h, w, hh, &e.pngBuffers)
		if cf.jpeg {
			data = pngToJPEG(data) // still labeled image/png
		}
		parts = append(parts, respPart{InlineData: &blob{
			MimeType: "image/png",
			Data:     base64.StdEncoding.EncodeToString(data),
		}})
		imgTokens := imageOutputTokens(req.imageSize)
		out += imgTokens
		resp.Candidates = []candidate{{Content: &respContent{Parts: parts, Role: "model"}, FinishReason: "STOP"}}
		resp.UsageMetadata.CandidatesTokensDetails = []modalityCount{{"IMAGE", imgTokens}}
		if out > imgTokens {
			resp.UsageMetadata.CandidatesTokensDetails = append(resp.UsageMetadata.CandidatesTokensDetails, modalityCount{"TEXT", out - imgTokens})
		}
	} else {
		for i := 0; i < req.candidateCount; i++ {
			text, finish := e.textAnswer(req, newWriter(h+uint64(i)*0x632be59bd9b4e019, texts), cf)
			n := tokensOf(text)
			out += n
			resp.Candidates = append(resp.Candidates, candidate{
				Content:      &respContent{Parts: []respPart{{Text: text}}, Role: "model"},
				FinishReason: finish,
				Index:        i,
			})
		}
		resp.UsageMetadata.CandidatesTokensDetails = []modalityCount{{"TEXT", out}}
	}
	resp.UsageMetadata.CandidatesTokenCount = out
	resp.UsageMetadata.TotalTokenCount = prompt + out
	return resp
}

// textAnswer is one candidate's text and finish reason.
func (e *Emulator) textAnswer(req *request, w *writer, cf contentFaults) (string, string) {
	var text string
	jsonMode := req.mimeType == "application/json"
	switch {
	case req.mimeType == "text/x.enum" && req.schema != nil && len(req.schema.enum) > 0:
		v := req.schema.enum[w.r.IntN(len(req.schema.enum))]
		s, _ := v.(string)
		text = s
	case jsonMode && req.schema != nil:
		text = generateJSON(w, req.schema)
	case jsonMode:
		b, _ := marshalNoEscape(map[string]string{"response": w.paragraph(3)})
		text = string(b)
	default:
		text = w.plain()
	}
	finish := "STOP"
	if jsonMode && cf.numbers {
		text = numberFrom5(text)
	}
	if jsonMode && cf.fenced {
		text = "Here is the JSON you asked for:\n\n```json\n" + text + "\n```\n\nLet me know if you want any changes."
	}
	if jsonMode && cf.malformed {
		// Cut short: a prefix of a JSON object or array is never valid JSON;
		// a scalar's prefix may be, so spoil it.
		r := []rune(text)
		text = string(r[:len(r)*2/3])
		if json.Valid([]byte(text)) {
			text += "}"
		}
	}
	if req.maxOutput > 0 && tokensOf(text) > req.maxOutput {
		text = string([]rune(text)[:req.maxOutput*4])
		finish = "MAX_TOKENS"
	}
	return text, finish
}

// numberFrom5 adds to every object of every array of objects in the JSON
// text an "index" property numbering the elements from 5 (a near-miss the
// real models make: numbers nobody asked for, and wrong). Text that is not
// JSON is returned as it is.
func numberFrom5(text string) string {
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return text
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			for _, c := range v {
				walk(c)
			}
		case []any:
			for i, c := range v {
				if m, ok := c.(map[string]any); ok {
					m["index"] = 5 + i
				}
				walk(c)
			}
		}
	}
	walk(v)
	b, err := marshalNoEscape(v)
	if err != nil {
		return text
	}
	return strings.TrimSpace(string(b))
}

// pngToJPEG re-encodes PNG bytes as JPEG.
func pngToJPEG(b []byte) []byte {
	img, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		return b
	}
	var out bytes.Buffer
	if err := jpeg.Encode(&out, img, &jpeg.Options{Quality: 85}); err != nil {
		return b
	}
	return out.Bytes()
}
