package emulator

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// Transport returns an http.RoundTripper that serves requests with e in the
// calling goroutine: no sockets, no goroutines, so it works inside a
// testing/synctest bubble. Use it as the genai client's transport:
//
//	&http.Client{Transport: e.Transport()}
//
// The request's URL host is ignored. If the request's context is done when
// e has answered (a cancelled wait during injected latency), RoundTrip
// returns the context's error as a real transport would.
func (e *Emulator) Transport() http.RoundTripper { return transport{e} }

type transport struct{ e *Emulator }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	sr := req.Clone(req.Context())
	sr.RequestURI = req.URL.RequestURI()
	sr.RemoteAddr = "127.0.0.1:0"
	if sr.Body == nil {
		sr.Body = http.NoBody
	}
	if sr.Host == "" {
		sr.Host = req.URL.Host
	}
	rec := &recorder{header: make(http.Header)}
	t.e.ServeHTTP(rec, sr)
	if err := req.Context().Err(); err != nil {
		return nil, err
	}
	if rec.status == 0 {
		rec.status = http.StatusOK
	}
	h := rec.header.Clone()
	h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	return &http.Response{
		Status:        strconv.Itoa(rec.status) + " " + http.StatusText(rec.status),
		StatusCode:    rec.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          io.NopCloser(bytes.NewReader(rec.body.Bytes())),
		ContentLength: int64(rec.body.Len()),
		Request:       req,
	}, nil
}

// recorder is the http.ResponseWriter of an in-process round trip.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
