package httpapi

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/slideshowd/slideshowd/internal/pipeline"
	"github.com/slideshowd/slideshowd/scheduler"
)

// methodOrder sorts the methods of an Allow header.
func methodOrder(m string) int {
	switch m {
	case http.MethodGet:
		return 0
	case http.MethodHead:
		return 1
	case http.MethodPost:
		return 2
	case http.MethodDelete:
		return 3
	}
	return 4
}

// listFilter reads the query of GET /v1/slideshows: state (repeatable or
// comma-separated), priority, since (RFC 3339 or a Go duration back from
// now, like 24h), limit, cursor.
func listFilter(q url.Values, now time.Time) (pipeline.Filter, error) {
	var f pipeline.Filter
	for k, vs := range q {
		switch k {
		case "state", "priority", "since", "limit", "cursor":
			if k != "state" && len(vs) != 1 {
				return f, &fieldError{Field: k, Value: fmt.Sprintf("%d values", len(vs)), Reason: "give it once"}
			}
		default:
			return f, &fieldError{Field: k, Value: quoteValue(strings.Join(vs, ",")),
				Reason: "unknown parameter: want state, priority, since, limit or cursor"}
		}
	}
	for _, v := range q["state"] {
		for s := range strings.SplitSeq(v, ",") {
			f.States = append(f.States, pipeline.JobState(s))
		}
	}
	f.Priority = q.Get("priority")
	f.Cursor = q.Get("cursor")
	if v := q.Get("since"); v != "" {
		t, err := pipeline.ParseSince(v, now)
		if err != nil {
			return f, &fieldError{Field: "since", Value: quoteValue(v), Reason: pipeline.SinceReason}
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > pipeline.MaxPageSize {
			return f, &fieldError{Field: "limit", Value: quoteValue(v), Reason: fmt.Sprintf("want 1..%d", pipeline.MaxPageSize)}
		}
		f.Limit = n
	}
	return f, nil
}

// list serves GET /v1/slideshows: a page of jobs, newest first, without
// their analyses.
func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	f, err := listFilter(r.URL.Query(), time.Now())
	if err != nil {
		h.writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	pg, err := h.cfg.Service.Jobs(r.Context(), f)
	if err != nil {
		h.serviceError(w, r, err, "listing the slideshows")
		return
	}
	h.writeJSON(w, r, http.StatusOK, pg)
}

// cancel serves DELETE /v1/slideshows/{id}: 200 with the canceled job; 409
// naming the state when it had already ended.
func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if len(id) > maxIDLength {
		h.writeError(w, r, http.StatusNotFound, "slideshow not found")
		return
	}
	st, err := h.cfg.Service.Cancel(r.Context(), id)
	if errors.Is(err, pipeline.ErrFinal) {
		msg := "the slideshow has already ended: only a queued or running slideshow can be canceled"
		if st.State != "" {
			msg = fmt.Sprintf("the slideshow is %s: only a queued or running slideshow can be canceled", st.State)
		}
		h.writeError(w, r, http.StatusConflict, msg)
		return
	}
	if err != nil {
		h.serviceError(w, r, err, "canceling the slideshow")
		return
	}
	h.writeJSON(w, r, http.StatusOK, st)
}

// keyList is the answer of GET /v1/keys.
type keyList struct {
	Keys []scheduler.KeyStatus `json:"keys"`
}

// keys serves GET /v1/keys.
func (h *handler) keys(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Keys == nil {
		h.writeError(w, r, http.StatusServiceUnavailable, "keys are not available: no scheduler attached")
		return
	}
	h.writeJSON(w, r, http.StatusOK, keyList{Keys: h.cfg.Keys.Keys()})
}

func (h *handler) enableKey(w http.ResponseWriter, r *http.Request) {
	h.steerKey(w, r, func(id string) error { return h.cfg.Keys.EnableKey(r.Context(), id) })
}

func (h *handler) disableKey(w http.ResponseWriter, r *http.Request) {
	h.steerKey(w, r, func(id string) error { return h.cfg.Keys.DisableKey(r.Context(), id, "") })
}

// steerKey serves POST /v1/keys/{id}/enable and /disable: 200 with the
// key's status after the change, which is stored when it answers.
func (h *handler) steerKey(w http.ResponseWriter, r *http.Request, change func(id string) error) {
	if h.cfg.Keys == nil {
		h.writeError(w, r, http.StatusServiceUnavailable, "keys are not available: no scheduler attached")
		return
	}
	id := r.PathValue("id")
	if err := change(id); err != nil {
		h.serviceError(w, r, err, "changing the key")
		return
	}
	for _, k := range h.cfg.Keys.Keys() {
		if k.ID == id {
			h.writeJSON(w, r, http.StatusOK, k)
			return
		}
	}
	h.writeError(w, r, http.StatusNotFound, "key not found: see GET /v1/keys for the key ids")
}

// laneAnswer is the answer of POST /v1/lanes/{class}/{project}/resume: the
// lane after the change, as GET /v1/usage shows it (Lane is nil when the
// handler has no Summary).
type laneAnswer struct {
	Class   string                 `json:"class"`
	Project string                 `json:"project"`
	Lane    *scheduler.LaneSummary `json:"lane,omitempty"`
}

// resumeLane serves POST /v1/lanes/{class}/{project}/resume: 200 with the
// lane once its resumption is stored; 404 for an unknown class or a
// project without a lane on it. Resuming a lane that is not stopped
// answers 200 too.
func (h *handler) resumeLane(w http.ResponseWriter, r *http.Request) {
	if h.cfg.Lanes == nil {
		h.writeError(w, r, http.StatusServiceUnavailable, "lanes are not available: no scheduler attached")
		return
	}
	class, project := r.PathValue("class"), r.PathValue("project")
	err := h.cfg.Lanes.ResumeLane(r.Context(), class, project)
	switch {
	case errors.Is(err, scheduler.ErrUnknownClass):
		h.writeError(w, r, http.StatusNotFound, "class "+quoteValue(class)+" not found: see GET /v1/usage for the classes and their lanes")
		return
	case errors.Is(err, scheduler.ErrUnknownLane):
		h.writeError(w, r, http.StatusNotFound, "class "+quoteValue(class)+" has no lane of project "+quoteValue(project)+": see GET /v1/usage for the lanes")
		return
	case err != nil:
		h.serviceError(w, r, err, "resuming the lane")
		return
	}
	ans := laneAnswer{Class: class, Project: project}
	if h.cfg.Summary != nil {
		for _, c := range h.cfg.Summary().Classes {
			if c.Name != class {
				continue
			}
			for _, l := range c.Lanes {
				if l.Project == project {
					ans.Lane = &l
				}
			}
		}
	}
	h.writeJSON(w, r, http.StatusOK, ans)
}
