package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// The status page (GET /): server-rendered with html/template from the
// embedded files under page/, no script, refreshed by the browser (a meta
// refresh). With a Token it sits behind a login form that exchanges the
// token for a session cookie (HttpOnly, SameSite=Strict); every form that
// changes something carries the session's CSRF token.

//go:embed page
var pageFiles embed.FS

var pageTemplates = template.Must(template.New("").Funcs(template.FuncMap{
	"jobRow": func(st pipeline.Status, csrf string) jobRow { return newJobRow(st, csrf) },
}).ParseFS(pageFiles, "page/*.html"))

// Session limits of the status page.
const (
	sessionCookie   = "slideshowd_session"
	sessionLifetime = 12 * time.Hour
	maxSessions     = 1024
	// DefaultPageRefresh is Config.PageRefresh's default.
	DefaultPageRefresh = 5 * time.Second
	recentJobs         = 20
)

// session is one logged-in browser.
type session struct {
	csrf    string
	expires time.Time
}

// sessions are the status page's logins, in memory: a restart logs every
// browser out.
type sessions struct {
	mu sync.Mutex
	m  map[string]session
}

func randomToken() string {
	var b [32]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// create starts a session and returns its id.
func (s *sessions) create(now time.Time) (string, session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]session)
	}
	for id, se := range s.m {
		if !se.expires.After(now) {
			delete(s.m, id)
		}
	}
	if len(s.m) >= maxSessions { // drop the one closest to its end
		var oldest string
		for id, se := range s.m {
			if oldest == "" || se.expires.Before(s.m[oldest].expires) {
				oldest = id
			}
		}
		delete(s.m, oldest)
	}
	id := randomToken()
	se := session{csrf: randomToken(), expires: now.Add(sessionLifetime)}
	s.m[id] = se
	return id, se
}

func (s *sessions) get(id string, now time.Time) (session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	se, ok := s.m[id]
	if !ok || !se.expires.After(now) {
		return session{}, false
	}
	return se, true
}

func (s *sessions) end(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// pageSession returns the request's session, if it has a live one.
func (h *handler) pageSession(r *http.Request) (string, session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return "", session{}, false
	}
	se, ok := h.sessions.get(c.Value, time.Now())
	return c.Value, se, ok
}

func (h *handler) setSessionCookie(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: id, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
}

// registerPage adds the status page's routes.
func (h *handler) registerPage() {
	static, _ := fs.Sub(pageFiles, "page")
	h.mux.Handle("GET /ui/static/style.css", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	h.mux.HandleFunc("GET /{$}", h.page)
	h.mux.HandleFunc("POST /login", h.login)
	h.mux.HandleFunc("POST /logout", h.pageAction(func(w http.ResponseWriter, r *http.Request, id string) (string, error) {
		h.sessions.end(id)
		h.setSessionCookie(w, r, "", -1)
		return "", nil
	}))
	h.mux.HandleFunc("POST /ui/keys/{id}/enable", h.pageAction(func(w http.ResponseWriter, r *http.Request, _ string) (string, error) {
		if h.cfg.Keys == nil {
			return "", errors.New("keys are not available")
		}
		id := r.PathValue("id")
		if err := h.cfg.Keys.EnableKey(r.Context(), id); err != nil {
			return "", err
		}
		return "key " + id + " enabled", nil
	}))
	h.mux.HandleFunc("POST /ui/lanes/{class}/{project}/resume", h.pageAction(func(w http.ResponseWriter, r *http.Request, _ string) (string, error) {
		if h.cfg.Lanes == nil {
			return "", errors.New("lanes are not available")
		}
		class, project := r.PathValue("class"), r.PathValue("project")
		if err := h.cfg.Lanes.ResumeLane(r.Context(), class, project); err != nil {
			return "", err
		}
		return "lane " + project + " of " + class + " resumed", nil
	}))
	h.mux.HandleFunc("POST /ui/slideshows/{id}/cancel", h.pageAction(func(w http.ResponseWriter, r *http.Request, _ string) (string, error) {
		id := r.PathValue("id")
		if _, err := h.cfg.Service.Cancel(r.Context(), id); err != nil {
			return "", err
		}
		return "job " + id + " canceled", nil
	}))
	h.mux.Handle("GET /ui/slideshows/{id}/images/{n}", h.pageAuth(http.HandlerFunc(h.image)))
}

// pageAuth serves next to a browser with a live session; others get 401.
func (h *handler) pageAuth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, _, ok := h.pageSession(r); !ok {
			h.writeError(w, r, http.StatusUnauthorized, "log in on the status page first")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pageAction serves a form of the page: it needs a live session and the
// session's CSRF token in the form, does the action and sends the browser
// back to the page with a message (303).
func (h *handler) pageAction(do func(w http.ResponseWriter, r *http.Request, session string) (string, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, se, ok := h.pageSession(r)
		if !ok {
			h.writeError(w, r, http.StatusUnauthorized, "log in on the status page first")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if err := r.ParseForm(); err != nil {
			h.writeError(w, r, http.StatusBadRequest, "form: "+err.Error())
			return
		}
		if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(se.csrf)) != 1 {
			h.writeError(w, r, http.StatusForbidden, "csrf: missing or wrong: reload the status page and try again")
			return
		}
		msg, err := do(w, r, id)
		if err != nil {
			msg = "failed: " + pageError(err)
			if !isClientError(err) {
				h.log.Error().Str("request_id", requestID(r.Context())).Str("error", h.redact.String(err.Error())).Msg("status page action failed")
				msg = "failed: internal error (request id " + requestID(r.Context()) + ")"
			}
		}
		target := "/"
		if msg != "" {
			target += "?msg=" + url.QueryEscape(msg)
		}
		http.Redirect(w, r, target, http.StatusSeeOther)
	}
}

func isClientError(err error) bool {
	return errors.Is(err, scheduler.ErrUnknownKey) || errors.Is(err, scheduler.ErrUnknownClass) || errors.Is(err, scheduler.ErrUnknownLane) ||
		errors.Is(err, pipeline.ErrNotFound) || errors.Is(err, pipeline.ErrFinal)
}

func pageError(err error) string {
	switch {
	case errors.Is(err, scheduler.ErrUnknownKey):
		return "no such key"
	case errors.Is(err, scheduler.ErrUnknownClass), errors.Is(err, scheduler.ErrUnknownLane):
		return "no such lane"
	case errors.Is(err, pipeline.ErrNotFound):
		return "no such job"
	case errors.Is(err, pipeline.ErrFinal):
		return "the job had already ended"
	}
	return err.Error()
}

// login serves POST /login: the token for a session cookie.
func (h *handler) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		h.writeError(w, r, http.StatusBadRequest, "form: "+err.Error())
		return
	}
	if h.cfg.Token != "" && !tokenMatches(r.PostForm.Get("token"), tokenDigest(h.cfg.Token)) {
		h.renderPage(w, r, http.StatusUnauthorized, "login.html", struct{ Error string }{"wrong token"})
		return
	}
	id, _ := h.sessions.create(time.Now())
	h.setSessionCookie(w, r, id, int(sessionLifetime/time.Second))
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// page serves GET /: the login form without a session (with a Token), else
// the status. Without a Token a session starts at once: the page still
// needs one for its forms' CSRF tokens.
func (h *handler) page(w http.ResponseWriter, r *http.Request) {
	_, se, ok := h.pageSession(r)
	if !ok {
		if h.cfg.Token != "" {
			h.renderPage(w, r, http.StatusOK, "login.html", struct{ Error string }{})
			return
		}
		var id string
		id, se = h.sessions.create(time.Now())
		h.setSessionCookie(w, r, id, int(sessionLifetime/time.Second))
	}
	data, err := h.pageData(r.Context(), se)
	if err != nil {
		h.serviceError(w, r, err, "building the status page")
		return
	}
	if msg := r.URL.Query().Get("msg"); len(msg) <= 200 {
		data.Flash = msg
	}
	h.renderPage(w, r, http.StatusOK, "status.html", data)
}

func (h *handler) renderPage(w http.ResponseWriter, r *http.Request, code int, name string, data any) {
	var buf bytes.Buffer
	if err := pageTemplates.ExecuteTemplate(&buf, name, data); err != nil {
		h.internalError(w, r, "rendering the status page", err)
		return
	}
	b := []byte(h.redact.String(buf.String()))
	hd := w.Header()
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "no-store")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	hd.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(code)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// pageView is what status.html shows.
type pageView struct {
	Now      string
	Refresh  int // seconds; 0: no refresh
	LoggedIn bool
	CSRF     string
	Flash    string
	Classes  []classView
	Cluster  *scheduler.ClusterSummary // nil without a shared store
	Disabled []keyView
	Queue    []pipeline.Status
	Recent   []pipeline.Status
}

type classView struct {
	scheduler.ClassSummary
	Resets string
	Wait   string
	Lanes  []laneView
	// Shared: with redis_url the day shown (Day, in the header and the
	// lanes' bars) is the cluster's (ClusterDayUsed), and DayUsed, this
	// process's own, is labelled as such. Without it Day is DayUsed.
	Shared bool
	Day    int
}

type laneView struct {
	scheduler.LaneSummary
	Keys                   string
	RPMPercent, DayPercent int
	// Day is the day used shown: the cluster's (ClusterDayUsed) with
	// redis_url, else DayUsed.
	Day int
	// Thresholds of the bars' colours: low below 50 %, high from 80 %.
	RPMLow, RPMHigh, DayLow, DayHigh int
	State, StateClass                string
}

type keyView struct {
	ID, Project, Reason, Since string
}

// jobRow is one job in a table of the page.
type jobRow struct {
	Job        pipeline.Status
	CSRF       string
	Created    string
	StateClass string
	Done       int
	Thumbs     []string
	Cancelable bool
}

func newJobRow(st pipeline.Status, csrf string) jobRow {
	row := jobRow{Job: st, CSRF: csrf, Created: st.CreatedAt.In(bucket.Pacific).Format("Jan 2 15:04:05 MST"),
		Cancelable: !st.State.Final(), StateClass: "state-ok"}
	switch {
	case st.State == pipeline.JobFailed || st.State == pipeline.JobCanceled:
		row.StateClass = "state-bad"
	case st.Wait != nil:
		row.StateClass = "state-wait"
	}
	for _, is := range st.Images {
		if is.State == pipeline.ImageDone {
			row.Done++
			row.Thumbs = append(row.Thumbs, "/ui/slideshows/"+url.PathEscape(st.ID)+"/images/"+strconv.Itoa(is.N))
		}
	}
	return row
}

func percent(used, limit int) int {
	if limit <= 0 {
		return 0
	}
	return min(100, used*100/limit)
}

func (h *handler) pageData(ctx context.Context, se session) (pageView, error) {
	now := time.Now()
	v := pageView{Now: now.In(bucket.Pacific).Format("2006-01-02 15:04:05 MST"), LoggedIn: h.cfg.Token != "", CSRF: se.csrf}
	if h.cfg.PageRefresh > 0 {
		v.Refresh = max(1, int(h.cfg.PageRefresh/time.Second))
	}
	if h.cfg.Summary != nil {
		sum := h.cfg.Summary()
		v.Cluster = sum.Cluster
		for _, c := range sum.Classes {
			// With redis_url (a cluster view, even one Redis did not
			// answer: the scheduler keeps the day counts it last read)
			// the cluster's day comes first; this process's own is
			// shown as its part.
			cv := classView{ClassSummary: c, Shared: sum.Cluster != nil, Day: c.DayUsed}
			if cv.Shared {
				cv.Day = max(c.ClusterDayUsed, c.DayUsed)
			}
			if !c.DayResetsAt.IsZero() {
				cv.Resets = c.DayResetsAt.In(bucket.Pacific).Format("Jan 2 15:04 MST")
			}
			if c.Wait != nil {
				cv.Wait = c.Wait.Reason
			}
			for _, l := range c.Lanes {
				day := l.DayUsed
				if cv.Shared {
					day = max(l.ClusterDayUsed, l.DayUsed)
				}
				lv := laneView{LaneSummary: l, Keys: strings.Join(l.Keys, ", "), Day: day,
					RPMPercent: percent(l.RPMUsed, l.RPMLimit), DayPercent: percent(day, l.DayLimit)}
				lv.RPMLow, lv.RPMHigh = l.RPMLimit/2, l.RPMLimit*8/10
				lv.DayLow, lv.DayHigh = l.DayLimit/2, l.DayLimit*8/10
				if len(l.DisabledKeys) > 0 {
					lv.Keys += " (disabled: " + strings.Join(l.DisabledKeys, ", ") + ")"
				}
				lv.State, lv.StateClass = "ok", "state-ok"
				switch {
				case l.Stopped != "": // a stopped lane is not enabled either: say why
					lv.State, lv.StateClass = "stopped: "+l.Stopped, "state-bad"
				case !l.Enabled:
					lv.State, lv.StateClass = "disabled", "state-bad"
				case l.ExhaustedUntil.After(now):
					lv.State, lv.StateClass = "out for the day until "+l.ExhaustedUntil.In(bucket.Pacific).Format("Jan 2 15:04 MST"), "state-bad"
				case l.HeldUntil.After(now) && !l.CoolUntil.After(l.HeldUntil):
					lv.State, lv.StateClass = scheduler.HoldWords(l.Held, l.HeldUntil, now), "state-wait"
				case l.CoolUntil.After(now):
					lv.State, lv.StateClass = "cooling down for "+scheduler.ShortDuration(l.CoolUntil.Sub(now)), "state-wait"
				case day >= l.DayLimit:
					lv.State, lv.StateClass = "day used up until "+cv.Resets, "state-bad"
				}
				cv.Lanes = append(cv.Lanes, lv)
			}
			v.Classes = append(v.Classes, cv)
		}
	}
	if h.cfg.Keys != nil {
		for _, k := range h.cfg.Keys.Keys() {
			if k.Disabled == "" {
				continue
			}
			kv := keyView{ID: k.ID, Project: k.Project, Reason: k.Disabled}
			if !k.DisabledSince.IsZero() {
				kv.Since = k.DisabledSince.In(bucket.Pacific).Format("Jan 2 15:04 MST")
			}
			v.Disabled = append(v.Disabled, kv)
		}
	}
	queue, err := h.cfg.Service.Jobs(ctx, pipeline.Filter{
		States: []pipeline.JobState{pipeline.JobQueued, pipeline.JobAnalyzing, pipeline.JobGenerating}, Limit: pipeline.MaxPageSize})
	if err != nil {
		return pageView{}, fmt.Errorf("listing the queue: %w", err)
	}
	v.Queue = queue.Jobs
	rank := func(p string) int { pr, _ := scheduler.ParsePriority(p); return -int(pr) }
	slices.SortStableFunc(v.Queue, func(a, b pipeline.Status) int {
		if d := rank(a.Priority) - rank(b.Priority); d != 0 {
			return d
		}
		return a.CreatedAt.Compare(b.CreatedAt)
	})
	recent, err := h.cfg.Service.Jobs(ctx, pipeline.Filter{Limit: recentJobs})
	if err != nil {
		return pageView{}, fmt.Errorf("listing recent jobs: %w", err)
	}
	v.Recent = recent.Jobs
	return v, nil
}
