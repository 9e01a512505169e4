package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
)

// A transport error quotes the request's URL, built from the base URL
// ("Post \"http://host/...#FRAGMENT\": dial tcp ..."): the parts of the base
// URL that check shows as [REDACTED] (here its fragment) are redacted in the
// job's error over the API and in the log too, as check shows them.
func TestServeTransportErrorRedactsBaseURL(t *testing.T) {
	const frag = "fr4gment-s3cret-value"
	dir := t.TempDir()
	writeTestFile(t, filepath.Join(dir, "slideshowd.yaml"), fastConfig)
	// Port 1 refuses: every attempt is a transport error.
	vars := keyEnv("http://127.0.0.1:1/#"+frag, filepath.Join(dir, "data"))
	vars["SLIDESHOWD_TOKEN"] = testToken
	d := startServe(t, dir, vars)
	code, body := d.call(t, "POST", "/v1/slideshows", testToken, `{"source": "Tides", "slides": [{"text": "The moon pulls the sea."}], "images": 1}`)
	if code != http.StatusAccepted {
		t.Fatalf("create: %d %s", code, body)
	}
	var created struct{ ID string }
	if err := json.Unmarshal(body, &created); err != nil || created.ID == "" {
		t.Fatalf("create answer %s", body)
	}
	st := d.waitJob(t, created.ID, testToken, nil)
	if st.State != "failed" || !strings.Contains(st.Error, "127.0.0.1:1") {
		t.Fatalf("job %s: %q, want failed with the transport error\nlogs:\n%s", st.State, st.Error, d.logs())
	}
	if strings.Contains(st.Error, frag) || !strings.Contains(st.Error, "#[REDACTED]") {
		t.Errorf("job error %q: want the base URL's fragment shown as #[REDACTED]", st.Error)
	}
	_, list := d.call(t, "GET", "/v1/slideshows", testToken, "")
	if strings.Contains(string(list), frag) {
		t.Errorf("GET /v1/slideshows shows the fragment: %s", list)
	}
	if logs := d.logs(); strings.Contains(logs, frag) {
		t.Errorf("the log shows the fragment:\n%s", logs)
	}
}
