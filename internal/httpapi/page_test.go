package httpapi

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// pageEnv is a handler with a token, a real scheduler's keys and summary,
// and the fake service.
func pageEnv(t *testing.T) (*testEnv, *scheduler.Scheduler) {
	t.Helper()
	sched, err := scheduler.New(scheduler.Config{
		Classes: []scheduler.ClassConfig{{Name: "text", Limits: bucket.Limits{RPM: 10, RPD: 100}}, {Name: "image", Limits: bucket.Limits{RPM: 2, RPD: 5}}},
		Keys:    []bucket.Key{{ID: "key1", Project: "p1"}, {ID: "key2", Project: "p2"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := sched.DisableKey(t.Context(), "key2", "leaked"); err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, func(c *Config) {
		c.Token, c.Keys, c.Lanes, c.Summary = testToken, sched, sched, sched.Summary
	})
	env.svc.setJob(pipeline.Status{ID: "job1", Source: "Deck <one>", Priority: "high", State: pipeline.JobGenerating,
		Images: []pipeline.ImageStatus{{N: 1, State: pipeline.ImageDone}, {N: 2, State: pipeline.ImagePending}}})
	return env, sched
}

func form(vals url.Values) (string, reqOpt) {
	return vals.Encode(), withHeader("Content-Type", "application/x-www-form-urlencoded")
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func TestStatusPageLoginAndForms(t *testing.T) {
	env, sched := pageEnv(t)
	// No session: the login form, no data.
	w := env.do(t, "GET", "/", "")
	if w.Code != 200 || !strings.Contains(w.Body.String(), `id="login"`) || strings.Contains(w.Body.String(), "key1") {
		t.Fatalf("GET / without a session: %d %s", w.Code, w.Body)
	}
	body, ct := form(url.Values{"token": {"wrong-token-0123456789"}})
	if w := env.do(t, "POST", "/login", body, ct); w.Code != 401 || !strings.Contains(w.Body.String(), "wrong token") || len(w.Result().Cookies()) != 0 {
		t.Fatalf("wrong token: %d %v %s", w.Code, w.Result().Cookies(), w.Body)
	}
	body, ct = form(url.Values{"token": {testToken}})
	w = env.do(t, "POST", "/login", body, ct)
	cookies := w.Result().Cookies()
	if w.Code != http.StatusSeeOther || len(cookies) != 1 || !cookies[0].HttpOnly || cookies[0].SameSite != http.SameSiteStrictMode || cookies[0].Path != "/" {
		t.Fatalf("login: %d %+v", w.Code, cookies)
	}
	withSession := func(r *http.Request) { r.AddCookie(cookies[0]) }
	w = env.do(t, "GET", "/", "", withSession)
	page := w.Body.String()
	for _, want := range []string{`id="lanes-text"`, `id="lanes-image"`, `id="disabled-key2"`, "leaked", `id="enable-key2"`,
		`id="cancel-job1"`, "Deck &lt;one&gt;", `src="/ui/slideshows/job1/images/1"`, `http-equiv="refresh" content="5"`, `<meter class="bar"`} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	if strings.Contains(page, testToken) || !strings.Contains(w.Header().Get("Content-Security-Policy"), "default-src 'none'") {
		t.Fatal("the page shows the token, or has no CSP")
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf token in the page")
	}
	// A form without the CSRF token, or with another, is refused.
	for _, tok := range []string{"", "forged"} {
		body, ct := form(url.Values{"csrf": {tok}})
		if w := env.do(t, "POST", "/ui/keys/key2/enable", body, ct, withSession); w.Code != http.StatusForbidden {
			t.Fatalf("csrf %q: %d", tok, w.Code)
		}
	}
	// Without the session cookie (a cross-site post under SameSite=Strict): 401.
	body, ct = form(url.Values{"csrf": {m[1]}})
	if w := env.do(t, "POST", "/ui/keys/key2/enable", body, ct); w.Code != http.StatusUnauthorized {
		t.Fatalf("no session: %d", w.Code)
	}
	if sched.Keys()[1].Disabled == "" {
		t.Fatal("key2 enabled by a refused form")
	}
	w = env.do(t, "POST", "/ui/keys/key2/enable", body, ct, withSession)
	if w.Code != http.StatusSeeOther || sched.Keys()[1].Disabled != "" || !strings.Contains(w.Header().Get("Location"), "enabled") {
		t.Fatalf("enable: %d %s, key2 %+v", w.Code, w.Header().Get("Location"), sched.Keys()[1])
	}
	w = env.do(t, "POST", "/ui/slideshows/job1/cancel", body, ct, withSession)
	if st, _ := env.svc.Status(t.Context(), "job1"); w.Code != http.StatusSeeOther || st.State != pipeline.JobCanceled {
		t.Fatalf("cancel: %d, job %+v", w.Code, st)
	}
	w = env.do(t, "POST", "/ui/slideshows/job1/cancel", body, ct, withSession)
	if loc := w.Header().Get("Location"); !strings.Contains(loc, "already+ended") {
		t.Fatalf("cancel again: %d %s", w.Code, loc)
	}
	// Thumbnails need the session.
	if w := env.do(t, "GET", "/ui/slideshows/job1/images/1", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("thumbnail without session: %d", w.Code)
	}
	// Logging out ends the session.
	body, ct = form(url.Values{"csrf": {m[1]}})
	env.do(t, "POST", "/logout", body, ct, withSession)
	if w := env.do(t, "GET", "/", "", withSession); !strings.Contains(w.Body.String(), `id="login"`) {
		t.Fatal("still logged in after logout")
	}
	if w := env.do(t, "GET", "/ui/static/style.css", ""); w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Fatalf("style.css: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
}

// Without a token the page needs no login but still a session for CSRF.
func TestStatusPageWithoutToken(t *testing.T) {
	env := newEnv(t, nil)
	w := env.do(t, "GET", "/", "")
	if w.Code != 200 || strings.Contains(w.Body.String(), `id="login"`) || len(w.Result().Cookies()) != 1 {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	if w := env.do(t, "POST", "/ui/slideshows/x/cancel", "csrf=x", withHeader("Content-Type", "application/x-www-form-urlencoded")); w.Code != http.StatusUnauthorized {
		t.Fatalf("a form without the session cookie: %d", w.Code)
	}
}

// stoppedLane is pageEnv with project p1's lane of the image class stopped
// as the scheduler stops it when the API says the quota's limit is 0.
func stoppedLane(t *testing.T) (*testEnv, *scheduler.Scheduler) {
	t.Helper()
	env, sched := pageEnv(t)
	if !sched.Pool().Class("image").Stop("p1", scheduler.ReasonNoQuota) {
		t.Fatal("no lane p1 on image")
	}
	return env, sched
}

// laneStopped returns the Stopped reason of project's lane on class.
func laneStopped(t *testing.T, sched *scheduler.Scheduler, class, project string) string {
	t.Helper()
	for _, c := range sched.Summary().Classes {
		for _, l := range c.Lanes {
			if c.Name == class && l.Project == project {
				return l.Stopped
			}
		}
	}
	t.Fatalf("no lane %s on %s", project, class)
	return ""
}

// POST /v1/lanes/{class}/{project}/resume puts a stopped lane back into
// service: token-protected, 404 for an unknown class or project, POST
// only, 503 without a LaneService.
func TestResumeLaneEndpoint(t *testing.T) {
	env, sched := stoppedLane(t)
	if w := env.do(t, "POST", "/v1/lanes/image/p1/resume", ""); w.Code != http.StatusUnauthorized {
		t.Fatalf("without the token: %d %s", w.Code, w.Body)
	}
	if laneStopped(t, sched, "image", "p1") == "" {
		t.Fatal("resumed without the token")
	}
	w := env.do(t, "GET", "/v1/usage", "", withToken(testToken))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"stopped":"`+scheduler.ReasonNoQuota+`"`) {
		t.Fatalf("GET /v1/usage does not show the stopped lane: %d %s", w.Code, w.Body)
	}
	for _, c := range []struct {
		method, path string
		code         int
		msg          string
	}{
		{"POST", "/v1/lanes/video/p1/resume", 404, `class "video" not found`},
		{"POST", "/v1/lanes/image/p9/resume", 404, `class "image" has no lane of project "p9"`},
		{"GET", "/v1/lanes/image/p1/resume", 405, `method "GET" not allowed: use POST`},
	} {
		w := env.do(t, c.method, c.path, "", withToken(testToken))
		if w.Code != c.code || !strings.HasPrefix(apiErr(t, w).Message, c.msg) {
			t.Errorf("%s %s: %d %s, want %d %q...", c.method, c.path, w.Code, w.Body, c.code, c.msg)
		}
	}
	if laneStopped(t, sched, "image", "p1") == "" {
		t.Fatal("resumed by a refused request")
	}
	for range 2 { // resuming a lane that is not stopped is no error
		w = env.do(t, "POST", "/v1/lanes/image/p1/resume", "", withToken(testToken))
		var ans laneAnswer
		if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &ans) != nil || ans.Class != "image" || ans.Project != "p1" ||
			ans.Lane == nil || ans.Lane.Stopped != "" || ans.Lane.Project != "p1" {
			t.Fatalf("resume: %d %s", w.Code, w.Body)
		}
	}
	if s := laneStopped(t, sched, "image", "p1"); s != "" {
		t.Fatalf("still stopped: %q", s)
	}
	none := newEnv(t, nil)
	if w := none.do(t, "POST", "/v1/lanes/image/p1/resume", ""); w.Code != 503 {
		t.Errorf("without a LaneService: %d %s", w.Code, w.Body)
	}
}

// The status page shows a stopped lane with a Resume button, a form with
// the session's CSRF token like the others.
func TestStatusPageResumesLane(t *testing.T) {
	env, sched := stoppedLane(t)
	body, ct := form(url.Values{"token": {testToken}})
	w := env.do(t, "POST", "/login", body, ct)
	cookies := w.Result().Cookies()
	if len(cookies) != 1 {
		t.Fatalf("login: %d %v", w.Code, cookies)
	}
	withSession := func(r *http.Request) { r.AddCookie(cookies[0]) }
	page := env.do(t, "GET", "/", "", withSession).Body.String()
	if !strings.Contains(page, "stopped: "+scheduler.ReasonNoQuota) || !strings.Contains(page, `id="resume-image-p1"`) ||
		!strings.Contains(page, `action="/ui/lanes/image/p1/resume"`) || strings.Contains(page, `id="resume-text-p1"`) {
		t.Fatalf("the page lacks the stopped lane or its button, or shows one for a running lane:\n%s", page)
	}
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf token in the page")
	}
	body, ct = form(url.Values{"csrf": {"forged"}})
	if w := env.do(t, "POST", "/ui/lanes/image/p1/resume", body, ct, withSession); w.Code != http.StatusForbidden || laneStopped(t, sched, "image", "p1") == "" {
		t.Fatalf("forged csrf: %d", w.Code)
	}
	body, ct = form(url.Values{"csrf": {m[1]}})
	w = env.do(t, "POST", "/ui/lanes/image/p9/resume", body, ct, withSession)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.Contains(loc, "no+such+lane") {
		t.Fatalf("unknown lane: %d %s", w.Code, loc)
	}
	w = env.do(t, "POST", "/ui/lanes/image/p1/resume", body, ct, withSession)
	if loc := w.Header().Get("Location"); w.Code != http.StatusSeeOther || !strings.Contains(loc, "resumed") || laneStopped(t, sched, "image", "p1") != "" {
		t.Fatalf("resume: %d %s", w.Code, loc)
	}
	if page := env.do(t, "GET", "/", "", withSession).Body.String(); strings.Contains(page, `id="resume-image-p1"`) {
		t.Fatal("the button stays after the lane resumed")
	}
}

// TestStatusPageCluster: with a cluster's view in the summary the page shows
// the processes alive (this one marked), and per lane the shared window and
// day with each process's part (a process gone marked); Redis not answering
// shows the error; without a cluster, no section.
func TestStatusPageCluster(t *testing.T) {
	sum := scheduler.Summary{Cluster: &scheduler.ClusterSummary{
		Name: "prod", Process: "web-1-aa", Processes: []string{"web-1-aa", "web-2-bb"}, Day: "2026-03-01",
		Lanes: []scheduler.ClusterLaneUsage{{Class: "image", Project: "p<1>", WindowUsed: 7, RPMLimit: 20, DayUsed: 120, DayLimit: 250,
			Processes: []scheduler.ClusterProcessLane{{Process: "web-1-aa", Alive: true, WindowUsed: 7, DayUsed: 100}, {Process: "batch-9-cc", DayUsed: 20}}}},
	}}
	env := newEnv(t, func(c *Config) { c.Summary = func() scheduler.Summary { return sum } })
	body := env.do(t, "GET", "/", "").Body.String()
	for _, want := range []string{`id="cluster"`, "cluster prod", "2 alive: web-1-aa (this one), web-2-bb",
		`data-project="p&lt;1&gt;"`, "7/20", "120/250", "batch-9-cc (gone)"} {
		if !strings.Contains(body, want) {
			t.Errorf("page without %q:\n%s", want, body)
		}
	}
	sum.Cluster = &scheduler.ClusterSummary{Name: "prod", Error: "Redis did not answer: connection refused"}
	if body := env.do(t, "GET", "/", "").Body.String(); !strings.Contains(body, `id="cluster-error"`) || !strings.Contains(body, "connection refused") {
		t.Errorf("page with Redis down:\n%s", body)
	}
	sum.Cluster = nil
	if body := env.do(t, "GET", "/", "").Body.String(); strings.Contains(body, `id="cluster"`) {
		t.Errorf("a cluster section without a cluster:\n%s", body)
	}
}

// TestStatusPageLaneHeld: the page words a lane the cluster holds (a grant
// refused, no 429) by its hold; neither held lane reads "cooling down".
func TestStatusPageLaneHeld(t *testing.T) {
	now := time.Now()
	sum := scheduler.Summary{Time: now, Classes: []scheduler.ClassSummary{{Name: "image", Lanes: []scheduler.LaneSummary{
		{Project: "p1", Keys: []string{"key1"}, Enabled: true, RPMLimit: 20, DayLimit: 250,
			HeldUntil: now.Add(13*time.Second + 400*time.Millisecond), Held: scheduler.HoldWindow},
		{Project: "p2", Keys: []string{"key2"}, Enabled: true, RPMLimit: 20, DayLimit: 250,
			HeldUntil: now.Add(time.Hour + 500*time.Millisecond), Held: scheduler.HoldShare},
		{Project: "p3", Keys: []string{"key3"}, Enabled: true, RPMLimit: 20, DayLimit: 250,
			CoolUntil: now.Add(time.Hour + 500*time.Millisecond)},
	}}}}
	env := newEnv(t, func(c *Config) { c.Summary = func() scheduler.Summary { return sum } })
	body := env.do(t, "GET", "/", "").Body.String()
	for _, want := range []string{"waiting for the cluster&#39;s window (1", "Redis unreachable: share used (1h0m0s)", "cooling down for 1h0m0s"} {
		if !strings.Contains(body, want) {
			t.Errorf("page without %q:\n%s", want, body)
		}
	}
	if n := strings.Count(body, "cooling down"); n != 1 {
		t.Errorf("%d lanes cooling down on the page, want 1:\n%s", n, body)
	}
}

// TestStatusPageClusterDay: with redis_url (a cluster in the summary) the
// class's header and the lanes' "today" bars show the cluster's day, used
// and left, with this process's own use labelled as its part; they used to
// show this process's own day (day 54/1000, bars at its own 30/500) next to
// the cluster table's counts. A lane the cluster used up reads "day used
// up". Without a cluster the header and bars are this process's, as
// before.
func TestStatusPageClusterDay(t *testing.T) {
	now := time.Now()
	sum := scheduler.Summary{Time: now, Cluster: &scheduler.ClusterSummary{Name: "c", Process: "host-1-aa", Day: "2026-12-01"},
		Classes: []scheduler.ClassSummary{{Name: "image", Keys: 3, RPMLimit: 60, DayUsed: 54, DayLimit: 1000, ClusterDayUsed: 684, DayRemaining: 316,
			DayResetsAt: now.Add(time.Hour),
			Lanes: []scheduler.LaneSummary{
				{Project: "p1", Keys: []string{"key1"}, Enabled: true, RPMLimit: 20, DayLimit: 500, DayUsed: 30, ClusterDayUsed: 184},
				{Project: "p2", Keys: []string{"key2"}, Enabled: true, RPMLimit: 20, DayLimit: 500, DayUsed: 24, ClusterDayUsed: 500},
			}}}}
	env := newEnv(t, func(c *Config) { c.Summary = func() scheduler.Summary { return sum } })
	body := env.do(t, "GET", "/", "").Body.String()
	for _, want := range []string{
		"day 684/1000 used by the cluster (54 by this process) · 316 left",
		`<th>today (cluster)</th>`,
		`value="184">36%</meter><span class="num">184/500</span> <span class="muted own">(30 by this process)</span>`,
		`value="500">100%</meter><span class="num">500/500</span> <span class="muted own">(24 by this process)</span>`,
		"day used up until",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page without %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "day 54/1000") || strings.Contains(body, "30/500") {
		t.Errorf("page shows this process's own day as the class's:\n%s", body)
	}

	sum.Cluster = nil
	sum.Classes[0].ClusterDayUsed, sum.Classes[0].DayRemaining = 0, 946
	for i := range sum.Classes[0].Lanes {
		sum.Classes[0].Lanes[i].ClusterDayUsed = 0
	}
	body = env.do(t, "GET", "/", "").Body.String()
	for _, want := range []string{"60 RPM · day 54/1000 · resets", `<th>today</th>`, `<span class="num">30/500</span></td>`} {
		if !strings.Contains(body, want) {
			t.Errorf("page without a cluster without %q:\n%s", want, body)
		}
	}
	if strings.Contains(body, "by this process") || strings.Contains(body, "day used up") {
		t.Errorf("page without a cluster labels a process's part or a day used up:\n%s", body)
	}
}
