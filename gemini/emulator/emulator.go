package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"
)

// Emulator is an http.Handler that answers like the Gemini API. It is safe
// for concurrent use. Create one with New; the zero value is not usable.
type Emulator struct {
	// Fixed at New.
	models     map[string]Limits
	layout     Layout
	freeTier   bool
	truncate   bool
	seed       int64
	loc        *time.Location
	imageScale float64
	maxBody    int64
	pngBuffers pngBuffers

	mu          sync.Mutex
	bySecret    map[string]*Key
	byName      map[string]*Key
	faults      Faults
	projects    map[string]Project
	rng         *rand.Rand
	lanes       map[LaneKey]*lane
	requests    map[RequestKey]int
	rateLimited map[string]int
	countTokens int
	seq         uint64
}

// LaneKey names the quotas of one project on one model (a plain value).
type LaneKey struct {
	Project, Model string
}

// RequestKey (a plain value) groups served requests: by key name ("" when the request had
// no valid key), model and the status answered. A fault delivered inside a
// stream counts with its error code although the HTTP status was 200; a
// request whose client went away during the latency counts as 499.
type RequestKey struct {
	Key    string
	Model  string
	Status int
}

// New returns an Emulator for cfg, with defaults applied (see Config).
func New(cfg Config) (*Emulator, error) {
	cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := &Emulator{
		models:      make(map[string]Limits, len(cfg.Models)),
		layout:      cfg.Layout,
		freeTier:    cfg.FreeTier,
		truncate:    cfg.TruncateRetryDelay,
		seed:        cfg.Seed,
		loc:         cfg.Location,
		imageScale:  cfg.ImageScale,
		maxBody:     cfg.MaxBodyBytes,
		bySecret:    make(map[string]*Key),
		byName:      make(map[string]*Key),
		faults:      cfg.Faults.clone(),
		projects:    make(map[string]Project, len(cfg.Projects)),
		rng:         rand.New(rand.NewPCG(uint64(cfg.Seed), 0x853c49e6748fea9b)),
		lanes:       make(map[LaneKey]*lane),
		requests:    make(map[RequestKey]int),
		rateLimited: make(map[string]int),
	}
	for m, l := range cfg.Models {
		e.models[strings.TrimPrefix(m, "models/")] = l
	}
	for _, k := range cfg.Keys {
		e.addKeyLocked(k)
	}
	for name, p := range cfg.Projects {
		e.projects[name] = p.clone()
	}
	return e, nil
}

func (e *Emulator) addKeyLocked(k Key) {
	if k.Project == "" {
		k.Project = k.Name
	}
	e.bySecret[k.Secret] = &k
	e.byName[k.Name] = &k
}

// AddKey makes the emulator accept k from now on. It returns an error
// wrapping ErrInvalidConfig for an empty name or secret, or ErrDuplicateKey
// if the name or secret is taken.
func (e *Emulator) AddKey(k Key) error {
	if err := k.validate("key"); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if _, ok := e.byName[k.Name]; ok {
		return fmt.Errorf("%w: name %q", ErrDuplicateKey, k.Name)
	}
	if _, ok := e.bySecret[k.Secret]; ok {
		return fmt.Errorf("%w: key %q has the secret of another key", ErrDuplicateKey, k.Name)
	}
	e.addKeyLocked(k)
	return nil
}

// SetLeaked marks the key named name as reported leaked (every request with
// it answers 403) or clears the mark. It returns ErrUnknownKey for a name
// the emulator does not know.
func (e *Emulator) SetLeaked(name string, leaked bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.byName[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKey, name)
	}
	k.Leaked = leaked
	return nil
}

// SetExpired marks the key named name as expired (every request with it
// answers 400 "API key expired") or clears the mark. It returns
// ErrUnknownKey for a name the emulator does not know.
func (e *Emulator) SetExpired(name string, expired bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.byName[name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKey, name)
	}
	k.Expired = expired
	return nil
}

// SetProject sets the account state of the project named name (any name:
// a project with no key yet is fine) from the next request on; the zero
// Project serves normally.
func (e *Emulator) SetProject(name string, p Project) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.projects[name] = p.clone()
}

// SetModelDown makes model answer 503 UNAVAILABLE to every request (down)
// or serve again.
func (e *Emulator) SetModelDown(model string, down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.faults.Down == nil {
		e.faults.Down = make(map[string]bool)
	}
	if down {
		e.faults.Down[model] = true
	} else {
		delete(e.faults.Down, model)
	}
}

// SetFaults replaces the injected faults, Down included, from the next
// request on. Invalid rates leave the faults as they were and return an
// error wrapping ErrInvalidConfig.
func (e *Emulator) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = f.clone()
	return nil
}

// Spend records n requests of tokens input tokens each, made now by a
// consumer the emulator's clients do not see, on project's quotas for model:
// they count against RPM, TPM and RPD like requests made through HTTP (and
// in Stats.MaxWindow and Stats.Day). As many are admitted as the quotas
// take; Spend returns that number. A model the emulator does not serve
// admits none.
func (e *Emulator) Spend(project, model string, n int, tokens int) int {
	lim, ok := e.models[model]
	if !ok || n <= 0 {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	l := e.laneLocked(project, model)
	k := l.room(now, lim, max(tokens, 0), n, e.loc)
	if k > 0 {
		l.admit(now, k, max(tokens, 0), e.loc)
		l.spent += k
	}
	return k
}

func (e *Emulator) laneLocked(project, model string) *lane {
	k := LaneKey{project, model}
	l, ok := e.lanes[k]
	if !ok {
		l = &lane{}
		e.lanes[k] = l
	}
	return l
}

func (e *Emulator) record(key, model string, status int) {
	e.mu.Lock()
	e.requests[RequestKey{key, model, status}]++
	e.mu.Unlock()
}

// testHookReceived, when set (by tests only), runs in serveGenerate right
// after a request's receive time is taken, before it is parsed: a test can
// delay a request between its arrival and the quota check.
var testHookReceived func()

// route is a parsed request path.
type route struct {
	version string
	model   string // without "models/"; "" for the model list
	action  string // "generateContent", "streamGenerateContent", "countTokens", or "" for GET of a model
}

var versions = names("v1beta", "v1", "v1alpha")

func parseRoute(path string) (route, bool) {
	var rt route
	path = strings.TrimPrefix(path, "/")
	v, rest, ok := strings.Cut(path, "/")
	if !ok || !versions[v] {
		return rt, false
	}
	rt.version = v
	if rest == "models" {
		return rt, true
	}
	name, ok := strings.CutPrefix(rest, "models/")
	if !ok || name == "" {
		return rt, false
	}
	if i := strings.LastIndexByte(name, ':'); i >= 0 {
		name, rt.action = name[:i], name[i+1:]
		switch rt.action {
		case "generateContent", "streamGenerateContent", "countTokens":
		default:
			return rt, false
		}
	}
	if name == "" || strings.Contains(name, "/") {
		return rt, false
	}
	rt.model = name
	return rt, true
}

// ServeHTTP answers one Gemini API request:
//
//	POST /v1beta/models/{model}:generateContent
//	POST /v1beta/models/{model}:streamGenerateContent[?alt=sse]
//	POST /v1beta/models/{model}:countTokens
//	GET  /v1beta/models, GET /v1beta/models/{model}
//
// (v1 and v1alpha paths too). The key comes from the x-goog-api-key header
// or the key query parameter.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt, ok := parseRoute(r.URL.Path)
	if !ok {
		writeError(w, newAPIError(404, msgMethodMissing))
		return
	}
	wantMethod := http.MethodPost
	if rt.action == "" {
		wantMethod = http.MethodGet
	}
	if r.Method != wantMethod {
		writeError(w, newAPIError(404, msgMethodMissing))
		return
	}
	switch rt.action {
	case "":
		e.serveModels(w, r, rt)
	case "countTokens":
		e.serveCount(w, r, rt)
	default:
		e.serveGenerate(w, r, rt)
	}
}

// authenticate returns the key's name and project, or the error to answer.
func (e *Emulator) authenticate(r *http.Request) (name, project string, ae *apiError) {
	secret := r.Header.Get("x-goog-api-key")
	if secret == "" {
		secret = r.URL.Query().Get("key")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k, ok := e.bySecret[secret]
	if !ok || secret == "" {
		return "", "", keyInvalidError()
	}
	if k.Leaked {
		return k.Name, k.Project, newAPIError(403, msgKeyLeaked)
	}
	if k.Expired {
		return k.Name, k.Project, keyExpiredError()
	}
	return k.Name, k.Project, nil
}

func (e *Emulator) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *apiError) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, e.maxBody))
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return nil, newAPIError(400, fmt.Sprintf("Request payload size exceeds the limit: %d bytes.", e.maxBody))
	case err != nil:
		return nil, newAPIError(400, "Failed to read the request body.")
	}
	return body, nil
}

func (e *Emulator) serveGenerate(w http.ResponseWriter, r *http.Request, rt route) {
	stream := rt.action == "streamGenerateContent"
	format := formatJSON
	if stream {
		format = formatArray
		if r.URL.Query().Get("alt") == "sse" {
			format = formatSSE
		}
	}
	name, project, ae := e.authenticate(r)
	fail := func(ae *apiError) {
		e.record(name, rt.model, ae.Code)
		writeError(w, ae)
	}
	if ae != nil {
		fail(ae)
		return
	}
	lim, ok := e.models[rt.model]
	if !ok {
		fail(modelNotFoundError(rt.version, rt.model, rt.action))
		return
	}
	body, ae := e.readBody(w, r)
	if ae != nil {
		fail(ae)
		return
	}
	// The request counts (in the quotas and the statistics) when its body
	// has been received, as the API counts it: parsing it and waiting for
	// the lock take this process's time, not the API's. Served through
	// RecordReceiveTimes (slideshowd emulate), it is when the body's last
	// bytes reached this machine (the kernel's stamp), however long this
	// process took to get the CPU and read them.
	received := ReceivedAt(r)
	if testHookReceived != nil {
		testHookReceived()
	}
	req, ae := parseGenerate(body)
	if ae == nil {
		ae = req.validate("")
	}
	if ae == nil {
		ae = imageConfigError(req)
	}
	if ae == nil && !isImageModel(rt.model) && req.wantsModality("IMAGE") {
		ae = badRequestError("Model does not support the requested response modalities: image")
	}
	if ae == nil && req.wantsModality("AUDIO") {
		ae = badRequestError("Model does not support the requested response modalities: audio")
	}
	if ae != nil {
		fail(ae)
		return
	}
	req.mediaCost = MediaTokens(rt.model, req.mediaRes)
	tokens := req.promptTokens()

	e.mu.Lock()
	if e.faults.Down[rt.model] {
		e.mu.Unlock()
		fail(unavailableError(e.layout))
		return
	}
	if p := e.projects[project]; p.OutOfCredit || p.BillingRequired || p.noQuota(rt.model) {
		var ae *apiError
		switch {
		case p.OutOfCredit:
			ae = newAPIError(429, msgOutOfCredit)
		case p.BillingRequired:
			ae = newAPIError(400, msgBillingRequired)
			ae.Status = "FAILED_PRECONDITION"
		default:
			ae = noQuotaError(rt.model, e.layout, e.freeTier)
		}
		e.mu.Unlock()
		fail(ae)
		return
	}
	now := received
	l := e.laneLocked(project, rt.model)
	l.arrive(now)
	if vs := l.check(now, lim, tokens, e.loc); len(vs) > 0 {
		perMinute := false
		for _, v := range vs {
			id, _ := quotaNames(v.kind, e.freeTier)
			e.rateLimited[id]++
			perMinute = perMinute || v.kind != perDay
		}
		if perMinute {
			l.limited++
		}
		e.mu.Unlock()
		fail(quotaError(vs, rt.model, e.layout, e.freeTier, e.truncate))
		return
	}
	var fault *apiError
	switch u := e.rng.Float64(); {
	case u < e.faults.Rate503:
		fault = unavailableError(e.layout)
	case u < e.faults.Rate503+e.faults.Rate500:
		fault = newAPIError(500, msgInternal)
	case u < e.faults.Rate503+e.faults.Rate500+e.faults.Rate504:
		fault = newAPIError(504, msgDeadline)
	}
	var latency time.Duration
	if e.faults.Latency != nil {
		latency = e.faults.Latency(rt.model, e.rng)
	}
	var cf contentFaults
	if fault == nil {
		l.admit(now, 1, tokens, e.loc)
		cf = contentFaults{
			malformed: e.rng.Float64() < e.faults.MalformedJSON,
			noImage:   e.rng.Float64() < e.faults.NoImage,
			blocked:   e.rng.Float64() < e.faults.Blocked,
			// Drawn only when set, so the sequence of earlier seeds is kept.
			fenced:  e.faults.FencedJSON > 0 && e.rng.Float64() < e.faults.FencedJSON,
			numbers: e.faults.WrongNumbers > 0 && e.rng.Float64() < e.faults.WrongNumbers,
			jpeg:    e.faults.MislabeledImage > 0 && e.rng.Float64() < e.faults.MislabeledImage,
		}
	}
	e.seq++
	seq := e.seq
	e.mu.Unlock()

	if latency > 0 {
		t := time.NewTimer(latency)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			fail(newAPIError(499, msgCancelled))
			return
		}
	}
	if fault != nil {
		e.record(name, rt.model, fault.Code)
		if stream {
			writeStreamError(w, format, fault) // a failure mid-stream, after the 200
		} else {
			writeError(w, fault)
		}
		return
	}
	resp := e.answer(req, rt.model, cf, seq)
	e.record(name, rt.model, http.StatusOK)
	writeOK(w, format, resp)
}

func (e *Emulator) serveCount(w http.ResponseWriter, r *http.Request, rt route) {
	_, _, ae := e.authenticate(r)
	if ae == nil {
		if _, ok := e.models[rt.model]; !ok {
			ae = modelNotFoundError(rt.version, rt.model, rt.action)
		}
	}
	var body []byte
	if ae == nil {
		body, ae = e.readBody(w, r)
	}
	var req *request
	if ae == nil {
		req, ae = parseCount(body)
	}
	if ae == nil {
		ae = req.validate("")
	}
	if ae != nil {
		writeError(w, ae)
		return
	}
	req.mediaCost = MediaTokens(rt.model, req.mediaRes)
	e.mu.Lock()
	e.countTokens++
	e.mu.Unlock()
	writeOK(w, formatJSON, countResponse{TotalTokens: req.promptTokens(), PromptTokensDetails: promptDetails(req)})
}

// modelInfo is a Model resource as models.get and models.list answer it.
type modelInfo struct {
	Name                       string   `json:"name"`
	Version                    string   `json:"version"`
	DisplayName                string   `json:"displayName"`
	Description                string   `json:"description"`
	InputTokenLimit            int      `json:"inputTokenLimit"`
	OutputTokenLimit           int      `json:"outputTokenLimit"`
	SupportedGenerationMethods []string `json:"supportedGenerationMethods"`
}

func describeModel(m string) modelInfo {
	in, out := 1048576, 65536
	if isImageModel(m) {
		in, out = 65536, 32768
	}
	words := strings.Split(m, "-")
	for i, w := range words {
		words[i] = upperFirst(w)
	}
	return modelInfo{
		Name:                       "models/" + m,
		Version:                    "emulated",
		DisplayName:                strings.Join(words, " "),
		Description:                "Served by the slideshowd Gemini API emulator.",
		InputTokenLimit:            in,
		OutputTokenLimit:           out,
		SupportedGenerationMethods: []string{"generateContent", "countTokens"},
	}
}

func (e *Emulator) serveModels(w http.ResponseWriter, r *http.Request, rt route) {
	if _, _, ae := e.authenticate(r); ae != nil {
		writeError(w, ae)
		return
	}
	if rt.model == "" {
		ms := make([]string, 0, len(e.models))
		for m := range e.models {
			ms = append(ms, m)
		}
		sort.Strings(ms)
		list := struct {
			Models []modelInfo `json:"models"`
		}{}
		for _, m := range ms {
			list.Models = append(list.Models, describeModel(m))
		}
		writeOK(w, formatJSON, list)
		return
	}
	if _, ok := e.models[rt.model]; !ok {
		writeError(w, modelNotFoundError(rt.version, rt.model, "get"))
		return
	}
	writeOK(w, formatJSON, describeModel(rt.model))
}

// answerFormat is how a response body is framed.
type answerFormat int

const (
	formatJSON  answerFormat = iota // one JSON object
	formatSSE                       // streamGenerateContent?alt=sse: "data: {...}" events
	formatArray                     // streamGenerateContent without alt=sse: a JSON array of responses
)

func encode(v any, indent bool) []byte {
	b, err := marshalNoEscape(v)
	if err != nil {
		panic("emulator: encoding a response cannot fail: " + err.Error())
	}
	if indent {
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") == nil {
			b = out.Bytes()
		}
	}
	return b
}

// writeError answers ae with its status and an indented JSON body, as the
// real API does (also for streams: errors found before the answer starts).
func writeError(w http.ResponseWriter, ae *apiError) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(ae.Code)
	w.Write(append(encode(errorBody{ae}, true), '\n'))
}

// writeStreamError answers 200 and delivers ae inside the stream.
func writeStreamError(w http.ResponseWriter, f answerFormat, ae *apiError) {
	writeOK(w, f, errorBody{ae})
}

func writeOK(w http.ResponseWriter, f answerFormat, v any) {
	switch f {
	case formatSSE:
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("data: "))
		w.Write(encode(v, false))
		w.Write([]byte("\r\n\r\n"))
	case formatArray:
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("["))
		w.Write(encode(v, true))
		w.Write([]byte("]"))
	default:
		w.Header().Set("Content-Type", "application/json; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		w.Write(append(encode(v, true), '\n'))
	}
	if fl, ok := w.(http.Flusher); ok {
		fl.Flush()
	}
}
