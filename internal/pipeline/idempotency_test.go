package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	"github.com/slideshowd/slideshowd/store"
)

// TestKeyReusedWithDifferentRequest: a keyed Submit finds the job of an
// equal request (existed) and refuses a different one under the same key
// with a *KeyReusedError wrapping ErrKeyReused, submitting nothing.
// Requests differing only in how they spell the same thing (priority ""
// and "normal", an image type given or sniffed) are equal.
func TestKeyReusedWithDifferentRequest(t *testing.T) {
	png := tinyPNG(t)
	base := Request{Source: "s", Slides: []SlideInput{{Text: "t"}, {Image: png}}, Images: 2, Key: "k"}
	tests := []struct {
		name string
		edit func(r *Request)
		same bool
	}{
		{"identical", func(r *Request) {}, true},
		{"priority spelled", func(r *Request) { r.Priority = "normal" }, true},
		{"image type given", func(r *Request) { r.Slides[1].ImageMIME = "image/png" }, true},
		{"source", func(r *Request) { r.Source = "other" }, false},
		{"priority", func(r *Request) { r.Priority = "high" }, false},
		{"images", func(r *Request) { r.Images = 3 }, false},
		{"slide text", func(r *Request) { r.Slides[0].Text = "t2" }, false},
		{"slide added", func(r *Request) { r.Slides = append(r.Slides, SlideInput{Text: "x"}) }, false},
		{"image removed", func(r *Request) { r.Slides[1] = SlideInput{Text: "now text"} }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, setup{noRun: true})
			ctx := context.Background()
			first := base
			first.Slides = append([]SlideInput(nil), base.Slides...)
			id, existed, err := h.p.SubmitKeyed(ctx, first)
			if err != nil || existed {
				t.Fatalf("first: %s %v %v", id, existed, err)
			}
			second := first
			second.Slides = append([]SlideInput(nil), first.Slides...)
			tt.edit(&second)
			id2, existed, err := h.p.SubmitKeyed(ctx, second)
			if tt.same {
				if err != nil || !existed || id2 != id {
					t.Fatalf("same request: %q %v %v, want %q existing", id2, existed, err, id)
				}
				return
			}
			var kr *KeyReusedError
			if !errors.As(err, &kr) || !errors.Is(err, ErrKeyReused) || kr.ID != id || kr.Key != "k" || id2 != "" {
				t.Fatalf("different request: %q %v %v, want a *KeyReusedError for job %s", id2, existed, err, id)
			}
			n := 0
			if err := h.st.Jobs(ctx, func(store.JobRecord) bool { n++; return true }); err != nil || n != 1 {
				t.Errorf("jobs stored: %d %v, want 1", n, err)
			}
		})
	}
}

// TestKeyedRecordWithoutDigest: a job stored before digests existed
// matches any request under its key, as before.
func TestKeyedRecordWithoutDigest(t *testing.T) {
	h := newHarness(t, setup{noRun: true})
	ctx := context.Background()
	id, _, err := h.p.SubmitKeyed(ctx, Request{Source: "s", Slides: []SlideInput{{Text: "t"}}, Images: 1, Key: "k"})
	if err != nil {
		t.Fatal(err)
	}
	jr, err := h.st.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	if err := json.Unmarshal(jr.Data, &rec); err != nil || rec.Digest == "" {
		t.Fatalf("stored record %s: %v, want a digest", jr.Data, err)
	}
	rec.Digest = ""
	data, _ := json.Marshal(rec)
	if err := h.st.PutJob(ctx, store.JobRecord{ID: id, Data: data}); err != nil {
		t.Fatal(err)
	}
	id2, existed, err := h.p.SubmitKeyed(ctx, Request{Source: "other", Slides: []SlideInput{{Text: "t"}}, Images: 1, Key: "k"})
	if err != nil || !existed || id2 != id {
		t.Errorf("old record: %q %v %v, want %q existing", id2, existed, err, id)
	}
}

// TestValidateAllowsTabNewlineCR: the control characters text has are
// accepted in source and slide text.
func TestValidateAllowsTabNewlineCR(t *testing.T) {
	r := Request{Source: "a\tb", Slides: []SlideInput{{Text: "line 1\r\nline 2\n\tindented"}}, Images: 1}
	if err := Validate(r); err != nil {
		t.Errorf("Validate: %v", err)
	}
}
