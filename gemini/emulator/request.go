package emulator

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// request is the part of a GenerateContentRequest the emulator acts on.
type request struct {
	contents []content
	system   *content

	mimeType       string  // generationConfig.responseMimeType, lower-case
	schema         *schema // responseSchema or responseJsonSchema, normalized
	modalities     []string
	aspectRatio    string
	imageSize      string
	candidateCount int
	maxOutput      int    // generationConfig.maxOutputTokens; 0 = model default
	mediaRes       string // generationConfig.mediaResolution
	mediaCost      int    // input tokens of one media part; set by the handler (MediaTokens)

	hash uint64 // of everything that shapes the answer
}

type content struct {
	role  string
	parts []part
}

type part struct {
	text    string
	isText  bool
	thought bool
	media   bool   // inlineData or fileData
	mime    string // of inlineData or fileData
}

// Known member names (lowerCamel) of the messages the emulator reads. Names
// outside these sets are rejected like the real API does ("Cannot find
// field"); snake_case spellings are accepted as by any proto JSON parser.
var (
	requestFields = names("model", "contents", "systemInstruction", "tools", "toolConfig", "safetySettings",
		"generationConfig", "cachedContent", "labels", "serviceTier", "continuationToken", "store")
	countFields   = names("contents", "generateContentRequest")
	contentFields = names("role", "parts")
	partFields    = names("text", "inlineData", "fileData", "functionCall", "functionResponse", "executableCode",
		"codeExecutionResult", "thought", "thoughtSignature", "videoMetadata", "mediaResolution", "partMetadata",
		"toolCall", "toolResponse")
	blobFields     = names("mimeType", "data", "displayName")
	fileDataFields = names("mimeType", "fileUri", "displayName")
	genConfFields  = names("stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema", "_responseJsonSchema",
		"responseModalities", "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
		"presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs", "enableEnhancedCivicAnswers",
		"speechConfig", "thinkingConfig", "imageConfig", "mediaResolution", "enableAffectiveDialog",
		"audioTimestamp", "routingConfig", "modelSelectionConfig", "audioTranscriptionConfig")
	imageConfFields = names("aspectRatio", "imageSize", "personGeneration", "imageOutputOptions", "outputMimeType",
		"outputCompressionQuality", "prominentPeople")
)

func names(ns ...string) map[string]bool {
	m := make(map[string]bool, len(ns))
	for _, n := range ns {
		m[n] = true
	}
	return m
}

// Proto type names used in "Invalid value" messages.
const (
	protoPrefix  = "type.googleapis.com/google.ai.generativelanguage.v1beta."
	protoContent = protoPrefix + "Content"
	protoPart    = protoPrefix + "Part"
	protoBlob    = protoPrefix + "Blob"
	protoGenConf = protoPrefix + "GenerationConfig"
	protoImgConf = protoPrefix + "ImageConfig"
	protoReq     = protoPrefix + "GenerateContentRequest"
	protoFile    = protoPrefix + "FileData"
)

// fields is a decoded JSON object keyed by lowerCamel member names.
type fields map[string]json.RawMessage

// snakeToCamel turns "response_mime_type" into "responseMimeType".
func snakeToCamel(s string) string {
	if !strings.Contains(strings.TrimPrefix(s, "_"), "_") {
		return s
	}
	var b strings.Builder
	up := false
	for i, r := range s {
		if r == '_' && i > 0 {
			up = true
			continue
		}
		if up {
			r, up = unicode.ToUpper(r), false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// camelToSnake turns "generationConfig" into "generation_config" for paths in messages.
func camelToSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}

func join(path, name string) string {
	if path == "" {
		return camelToSnake(name)
	}
	return path + "." + camelToSnake(name)
}

func invalidValue(path, typ string, raw json.RawMessage) *apiError {
	return badRequestError(fmt.Sprintf("Invalid value at '%s' (%s), %s", path, typ, compactRaw(raw)))
}

func compactRaw(raw json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return string(raw)
	}
	s := b.String()
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// object decodes raw as a JSON object whose members must be in known. path
// is the snake_case field path for messages ("" at the top), typ the proto
// type used when raw is not an object. null decodes as an empty object.
func object(raw json.RawMessage, path, typ string, known map[string]bool) (fields, *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalidValue(path, typ, raw)
	}
	f := make(fields, len(m))
	for k, v := range m {
		n := snakeToCamel(k)
		if !known[n] {
			if path == "" {
				return nil, badRequestError(fmt.Sprintf("Invalid JSON payload received. Unknown name %q: Cannot find field.", k))
			}
			return nil, badRequestError(fmt.Sprintf("Invalid JSON payload received. Unknown name %q at '%s': Cannot find field.", k, path))
		}
		f[n] = v
	}
	return f, nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func (f fields) str(name, path string) (string, *apiError) {
	raw, ok := f[name]
	if !ok || isNull(raw) {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", invalidValue(join(path, name), "TYPE_STRING", raw)
	}
	return s, nil
}

// int reads an int32/int64 member, given as a number or a decimal string as
// proto JSON allows.
func (f fields) int(name, path string) (int, *apiError) {
	raw, ok := f[name]
	if !ok || isNull(raw) {
		return 0, nil
	}
	n, ok := parseInt(raw)
	if !ok {
		return 0, invalidValue(join(path, name), "TYPE_INT32", raw)
	}
	return n, nil
}

func parseInt(raw json.RawMessage) (int, bool) {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return 0, false
	}
	switch x := v.(type) {
	case float64:
		if x != float64(int64(x)) || x > 1<<53 || x < -(1<<53) {
			return 0, false
		}
		return int(x), true
	case string:
		n, err := strconv.ParseInt(x, 10, 64)
		return int(n), err == nil
	}
	return 0, false
}

// list reads a repeated member; typ names its element type for messages.
func (f fields) list(name, path, typ string) ([]json.RawMessage, *apiError) {
	raw, ok := f[name]
	if !ok || isNull(raw) {
		return nil, nil
	}
	var l []json.RawMessage
	if json.Unmarshal(raw, &l) != nil {
		return nil, invalidValue(join(path, name), typ, raw)
	}
	return l, nil
}

// syntaxError renders a JSON syntax error as the real API does: the message,
// the offending line and a caret under the column.
func syntaxError(body []byte, err error) *apiError {
	off := int64(len(body))
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset - 1
	case errors.As(err, &te):
		off = te.Offset - 1
	}
	off = max(0, min(off, int64(len(body))))
	start := bytes.LastIndexByte(body[:off], '\n') + 1
	end := len(body)
	if i := bytes.IndexByte(body[off:], '\n'); i >= 0 {
		end = int(off) + i
	}
	line := string(body[start:end])
	col := int(off) - start
	if len(line) > 120 {
		lo := max(0, col-60)
		hi := min(len(line), lo+120)
		line, col = line[lo:hi], col-lo
	}
	return badRequestError(fmt.Sprintf("Invalid JSON payload received. Unexpected token.\n%s\n%s^", line, strings.Repeat(" ", col)))
}

// parseGenerate decodes a GenerateContentRequest body. path prefixes field
// paths in messages ("" for generateContent, "generate_content_request" for
// countTokens).
func parseGenerate(body []byte) (*request, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, syntaxError(body, err)
	}
	f, ae := object(body, "", protoReq, requestFields)
	if ae != nil {
		return nil, ae
	}
	return parseGenerateFields(f, "", body)
}

func parseGenerateFields(f fields, path string, canonical []byte) (*request, *apiError) {
	req := &request{candidateCount: 1}
	cs, ae := f.list("contents", path, protoContent)
	if ae != nil {
		return nil, ae
	}
	for i, raw := range cs {
		c, ae := parseContent(raw, fmt.Sprintf("%s[%d]", join(path, "contents"), i))
		if ae != nil {
			return nil, ae
		}
		req.contents = append(req.contents, c)
	}
	if raw, ok := f["systemInstruction"]; ok && !isNull(raw) {
		c, ae := parseContent(raw, join(path, "systemInstruction"))
		if ae != nil {
			return nil, ae
		}
		req.system = &c
	}
	if raw, ok := f["generationConfig"]; ok && !isNull(raw) {
		if ae := req.parseGenConfig(raw, join(path, "generationConfig")); ae != nil {
			return nil, ae
		}
	}
	req.hash = hashBytes(canonical)
	return req, nil
}

func parseContent(raw json.RawMessage, path string) (content, *apiError) {
	var c content
	f, ae := object(raw, path, protoContent, contentFields)
	if ae != nil {
		return c, ae
	}
	if c.role, ae = f.str("role", path); ae != nil {
		return c, ae
	}
	ps, ae := f.list("parts", path, protoPart)
	if ae != nil {
		return c, ae
	}
	for i, praw := range ps {
		ppath := fmt.Sprintf("%s.parts[%d]", path, i)
		pf, ae := object(praw, ppath, protoPart, partFields)
		if ae != nil {
			return c, ae
		}
		var p part
		set := 0
		if raw, ok := pf["text"]; ok && !isNull(raw) {
			if p.text, ae = pf.str("text", ppath); ae != nil {
				return c, ae
			}
			p.isText = true
			set++
		}
		if raw, ok := pf["thought"]; ok && !isNull(raw) {
			if json.Unmarshal(raw, &p.thought) != nil {
				return c, invalidValue(join(ppath, "thought"), "TYPE_BOOL", raw)
			}
		}
		if raw, ok := pf["inlineData"]; ok && !isNull(raw) {
			bpath := join(ppath, "inlineData")
			bf, ae := object(raw, bpath, protoBlob, blobFields)
			if ae != nil {
				return c, ae
			}
			if p.mime, ae = bf.str("mimeType", bpath); ae != nil {
				return c, ae
			}
			data, ae := bf.str("data", bpath)
			if ae != nil {
				return c, ae
			}
			if !validBase64(data) {
				return c, badRequestError(fmt.Sprintf("Invalid value at '%s' (TYPE_BYTES), Base64 decoding failed for %q", join(bpath, "data"), truncate(data, 40)))
			}
			p.media = true
			set++
		}
		if raw, ok := pf["fileData"]; ok && !isNull(raw) {
			fpath := join(ppath, "fileData")
			ff, ae := object(raw, fpath, protoFile, fileDataFields)
			if ae != nil {
				return c, ae
			}
			if p.mime, ae = ff.str("mimeType", fpath); ae != nil {
				return c, ae
			}
			p.media = true
			set++
		}
		for _, n := range []string{"functionCall", "functionResponse", "executableCode", "codeExecutionResult", "toolCall", "toolResponse"} {
			if raw, ok := pf[n]; ok && !isNull(raw) {
				// Not interpreted; its JSON counts as text for tokens.
				p.text += string(raw)
				set++
			}
		}
		if set == 0 {
			return c, badRequestError(fmt.Sprintf("* GenerateContentRequest.%s.data: required oneof field 'data' must have one initialized field\n", ppath))
		}
		c.parts = append(c.parts, p)
	}
	return c, nil
}

func validBase64(s string) bool {
	s = strings.TrimRight(s, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if _, err := enc.DecodeString(s); err == nil {
			return true
		}
	}
	return false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

func (req *request) parseGenConfig(raw json.RawMessage, path string) (ae *apiError) {
	f, ae := object(raw, path, protoGenConf, genConfFields)
	if ae != nil {
		return ae
	}
	mt, ae := f.str("responseMimeType", path)
	if ae != nil {
		return ae
	}
	req.mimeType = strings.ToLower(strings.TrimSpace(mt))
	if req.candidateCount, ae = f.int("candidateCount", path); ae != nil {
		return ae
	}
	if req.candidateCount == 0 {
		req.candidateCount = 1
	}
	if req.candidateCount < 0 || req.candidateCount > 8 {
		return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s: candidate_count must be in [1, 8], got %d\n", join(path, "candidateCount"), req.candidateCount))
	}
	if req.mediaRes, ae = f.str("mediaResolution", path); ae != nil {
		return ae
	}
	switch req.mediaRes {
	case "", "MEDIA_RESOLUTION_UNSPECIFIED", "MEDIA_RESOLUTION_LOW", "MEDIA_RESOLUTION_MEDIUM", "MEDIA_RESOLUTION_HIGH":
	default:
		return invalidValue(join(path, "mediaResolution"), protoPrefix+"GenerationConfig.MediaResolution", f["mediaResolution"])
	}
	if req.maxOutput, ae = f.int("maxOutputTokens", path); ae != nil {
		return ae
	}
	if req.maxOutput < 0 {
		return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s: max_output_tokens must be positive\n", join(path, "maxOutputTokens")))
	}
	mods, ae := f.list("responseModalities", path, protoPrefix+"GenerationConfig.Modality")
	if ae != nil {
		return ae
	}
	for i, m := range mods {
		var s string
		if json.Unmarshal(m, &s) != nil {
			return invalidValue(fmt.Sprintf("%s[%d]", join(path, "responseModalities"), i), protoPrefix+"GenerationConfig.Modality", m)
		}
		s = strings.ToUpper(s)
		switch s {
		case "TEXT", "IMAGE", "AUDIO", "MODALITY_UNSPECIFIED":
		default:
			return invalidValue(fmt.Sprintf("%s[%d]", join(path, "responseModalities"), i), protoPrefix+"GenerationConfig.Modality", m)
		}
		req.modalities = append(req.modalities, s)
	}
	if raw, ok := f["imageConfig"]; ok && !isNull(raw) {
		ipath := join(path, "imageConfig")
		imf, ae := object(raw, ipath, protoImgConf, imageConfFields)
		if ae != nil {
			return ae
		}
		if req.aspectRatio, ae = imf.str("aspectRatio", ipath); ae != nil {
			return ae
		}
		if req.imageSize, ae = imf.str("imageSize", ipath); ae != nil {
			return ae
		}
	}
	rs, hasRS := f["responseSchema"]
	js, hasJS := f["responseJsonSchema"]
	if !hasJS || isNull(js) {
		js, hasJS = f["_responseJsonSchema"]
	}
	hasRS, hasJS = hasRS && !isNull(rs), hasJS && !isNull(js)
	if hasRS && hasJS {
		return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s: response_schema and response_json_schema cannot both be set\n", path))
	}
	if (hasRS || hasJS) && req.mimeType != "application/json" && req.mimeType != "text/x.enum" {
		return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s: only supported for the following mime types: application/json, text/x.enum; got response_mime_type %q\n", join(path, "responseSchema"), req.mimeType))
	}
	defer func() {
		if req.schema != nil && ae == nil && tooComplex(req.schema) {
			ae = badRequestError(msgTooManyStates)
		}
	}()
	switch {
	case hasRS:
		s, err := parseSchema(rs, false)
		if err != nil {
			return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s%s\n", join(path, "responseSchema"), err.Error()))
		}
		req.schema = s
	case hasJS:
		s, err := parseSchema(js, true)
		if err != nil {
			return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s%s\n", join(path, "responseJsonSchema"), err.Error()))
		}
		req.schema = s
	}
	return nil
}

// validate checks what the real API checks of contents before generating.
func (req *request) validate(path string) *apiError {
	if len(req.contents) == 0 {
		return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s: contents is not specified\n", join(path, "contents")))
	}
	for i, c := range req.contents {
		switch c.role {
		case "", "user", "model":
		default:
			return badRequestError("Please use a valid role: user, model.")
		}
		if len(c.parts) == 0 {
			return badRequestError(fmt.Sprintf("* GenerateContentRequest.%s[%d].parts: contents.parts must not be empty.\n", join(path, "contents"), i))
		}
	}
	return nil
}

// wantsImage reports whether the answer should carry an image: the model
// makes images and the request does not limit the answer to text.
func (req *request) wantsImage(imageModel bool) bool {
	if !imageModel {
		return false
	}
	if len(req.modalities) == 0 {
		return true
	}
	for _, m := range req.modalities {
		if m == "IMAGE" {
			return true
		}
	}
	return false
}

func (req *request) wantsModality(m string) bool {
	for _, x := range req.modalities {
		if x == m {
			return true
		}
	}
	return false
}

// promptText is the text of the contents' parts, thoughts left out: what
// answers are made of. The system instruction is left out (it says how to
// answer, not what about) unless the contents have no text.
func (req *request) promptText() []string {
	var out []string
	add := func(c *content) {
		for _, p := range c.parts {
			if p.isText && !p.thought && p.text != "" {
				out = append(out, p.text)
			}
		}
	}
	for i := range req.contents {
		add(&req.contents[i])
	}
	if len(out) == 0 && req.system != nil {
		add(req.system)
	}
	return out
}

// parseCount decodes a countTokens body: {"contents": [...]} or
// {"generateContentRequest": {...}}.
func parseCount(body []byte) (*request, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 {
		body = []byte("{}")
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, syntaxError(body, err)
	}
	f, ae := object(body, "", protoPrefix+"CountTokensRequest", countFields)
	if ae != nil {
		return nil, ae
	}
	if raw, ok := f["generateContentRequest"]; ok && !isNull(raw) {
		if _, ok := f["contents"]; ok {
			return nil, badRequestError("* CountTokensRequest: contents and generate_content_request cannot both be set\n")
		}
		gf, ae := object(raw, "generate_content_request", protoReq, requestFields)
		if ae != nil {
			return nil, ae
		}
		return parseGenerateFields(gf, "generate_content_request", raw)
	}
	return parseGenerateFields(f, "", body)
}
