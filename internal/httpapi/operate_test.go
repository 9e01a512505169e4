package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

func TestListSlideshows(t *testing.T) {
	env := newEnv(t, nil)
	env.svc.setJob(pipeline.Status{ID: "a", State: pipeline.JobDone, Images: []pipeline.ImageStatus{}})
	env.svc.setJob(pipeline.Status{ID: "b", State: pipeline.JobQueued, Images: []pipeline.ImageStatus{}})
	w := env.do(t, "GET", "/v1/slideshows", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	var pg pipeline.Page
	if err := json.Unmarshal(w.Body.Bytes(), &pg); err != nil || len(pg.Jobs) != 2 || pg.Next != "page2" {
		t.Fatalf("page %s: %v", w.Body, err)
	}
	w = env.do(t, "GET", "/v1/slideshows?state=queued,running&state=done&priority=high&since=2026-03-01T12:00:00Z&limit=7&cursor=page2", "")
	if w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	f := env.svc.filters[len(env.svc.filters)-1]
	want := pipeline.Filter{States: []pipeline.JobState{"queued", "running", "done"}, Priority: "high",
		Since: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Limit: 7, Cursor: "page2"}
	if strings.Join(stateStrings(f.States), ",") != "queued,running,done" || f.Priority != want.Priority ||
		!f.Since.Equal(want.Since) || f.Limit != 7 || f.Cursor != "page2" {
		t.Fatalf("filter = %+v, want %+v", f, want)
	}
	before := time.Now()
	if w := env.do(t, "GET", "/v1/slideshows?since=24h", ""); w.Code != 200 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if f := env.svc.filters[len(env.svc.filters)-1]; f.Since.Before(before.Add(-24*time.Hour-time.Minute)) || f.Since.After(before.Add(-24*time.Hour+time.Minute)) {
		t.Fatalf("since=24h gave %v", f.Since)
	}
	for _, tc := range []struct{ query, field string }{
		{"limit=0", "limit"}, {"limit=501", "limit"}, {"limit=x", "limit"}, {"since=yesterday", "since"},
		{"since=-1h", "since"}, {"page=2", "page"}, {"priority=urgent", "priority"}, {"cursor=a&cursor=b", "cursor"},
	} {
		w := env.do(t, "GET", "/v1/slideshows?"+tc.query, "")
		if w.Code != 400 || !strings.HasPrefix(apiErr(t, w).Message, tc.field+":") {
			t.Errorf("%s: %d %s", tc.query, w.Code, w.Body)
		}
	}
}

func stateStrings(ss []pipeline.JobState) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = string(s)
	}
	return out
}

func TestCancelSlideshow(t *testing.T) {
	env := newEnv(t, func(c *Config) { c.Token = testToken })
	env.svc.setJob(pipeline.Status{ID: "run", State: pipeline.JobGenerating, Images: []pipeline.ImageStatus{}})
	env.svc.setJob(pipeline.Status{ID: "done", State: pipeline.JobDone, Images: []pipeline.ImageStatus{}})
	if w := env.do(t, "DELETE", "/v1/slideshows/run", ""); w.Code != 401 {
		t.Fatalf("without token: %d", w.Code)
	}
	w := env.do(t, "DELETE", "/v1/slideshows/run", "", withToken(testToken))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"state":"canceled"`) {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	w = env.do(t, "DELETE", "/v1/slideshows/done", "", withToken(testToken))
	if w.Code != 409 || apiErr(t, w).Message != "the slideshow is done: only a queued or running slideshow can be canceled" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := env.do(t, "DELETE", "/v1/slideshows/nope", "", withToken(testToken)); w.Code != 404 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}

func TestKeysEndpoints(t *testing.T) {
	sched, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "p1"}, {ID: "key2", Project: "p1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, func(c *Config) { c.Token = testToken; c.Keys = sched; c.Secrets = []string{testSecret} })
	keys := func() []scheduler.KeyStatus {
		t.Helper()
		w := env.do(t, "GET", "/v1/keys", "", withToken(testToken))
		if w.Code != 200 {
			t.Fatalf("%d %s", w.Code, w.Body)
		}
		var kl struct{ Keys []scheduler.KeyStatus }
		if err := json.Unmarshal(w.Body.Bytes(), &kl); err != nil {
			t.Fatal(err)
		}
		return kl.Keys
	}
	if ks := keys(); len(ks) != 2 || ks[0].ID != "key1" || ks[0].Project != "p1" || ks[0].Disabled != "" || ks[0].Classes[0].State != "ok" {
		t.Fatalf("keys = %+v", ks)
	}
	w := env.do(t, "POST", "/v1/keys/key2/disable", "", withToken(testToken))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"disabled":"disabled by an operator"`) || !strings.Contains(w.Body.String(), `"disabled_since"`) {
		t.Fatalf("disable: %d %s", w.Code, w.Body)
	}
	if ks := keys(); ks[1].Disabled == "" || ks[1].Classes[0].State != "disabled" {
		t.Fatalf("after disable: %+v", ks)
	}
	w = env.do(t, "POST", "/v1/keys/key2/enable", "", withToken(testToken))
	if w.Code != 200 || strings.Contains(w.Body.String(), `"disabled"`) {
		t.Fatalf("enable: %d %s", w.Code, w.Body)
	}
	for _, path := range []string{"/v1/keys/nope/enable", "/v1/keys/nope/disable"} {
		if w := env.do(t, "POST", path, "", withToken(testToken)); w.Code != 404 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
	}
	if w := env.do(t, "GET", "/v1/keys", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("without token: %d", w.Code)
	}
	// Without a KeyService: 503.
	env2 := newEnv(t, nil)
	for _, m := range [][2]string{{"GET", "/v1/keys"}, {"POST", "/v1/keys/key1/enable"}} {
		if w := env2.do(t, m[0], m[1], ""); w.Code != 503 {
			t.Fatalf("%v: %d", m, w.Code)
		}
	}
}
