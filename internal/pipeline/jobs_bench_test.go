package pipeline

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/gemini"
	"github.com/slideshowd/slideshowd/store"
)

// benchJobs fills a bbolt store with n done jobs of 8 slides and 5 images,
// with an analysis of about 4 KiB each (a record of about 6 KiB), created a
// second apart, and returns it.
func benchJobs(b *testing.B, n int) *store.Bolt {
	b.Helper()
	st, err := store.Open(filepath.Join(b.TempDir(), "bench.db"), store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	note := strings.Repeat("The moon pulls the sea; twice a day the water rises. ", 8)
	for i := range n {
		r := record{V: 1, ID: keyID(fmt.Sprint("bench-", i)), Source: fmt.Sprintf("Deck %d", i), Priority: "normal",
			Images: 5, State: JobDone, Attempts: 1, CreatedAt: base.Add(time.Duration(i) * time.Second)}
		r.UpdatedAt = r.CreatedAt.Add(time.Minute)
		a := gemini.Analysis{Summary: note, Hook: "Tides"}
		for s := range 8 {
			r.Slides = append(r.Slides, slideRecord{Text: note[:120]})
			a.Slides = append(a.Slides, gemini.SlideNote{Index: s, Notes: note})
		}
		for k := range 5 {
			a.ImagePrompts = append(a.ImagePrompts, note[:200])
			r.ImageStates = append(r.ImageStates, ImageStatus{N: k + 1, State: ImageDone})
		}
		r.Analysis = &a
		data, err := json.Marshal(r)
		if err != nil {
			b.Fatal(err)
		}
		if err := st.PutJob(b.Context(), store.JobRecord{ID: r.ID, Data: data}); err != nil {
			b.Fatal(err)
		}
	}
	return st
}

// BenchmarkStoredJobs measures one page of GET /v1/slideshows (the default
// 50 jobs) over a bbolt store of n jobs: the first page, and the page after
// a cursor in the middle of the listing.
func BenchmarkStoredJobs(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		st := benchJobs(b, n)
		first, err := StoredJobs(b.Context(), st, Filter{})
		if err != nil || len(first.Jobs) != DefaultPageSize || first.Next == "" {
			b.Fatalf("first page: %d jobs, next %q, %v", len(first.Jobs), first.Next, err)
		}
		mid := cursorPos{created: first.Jobs[0].CreatedAt.Add(-time.Duration(n/2) * time.Second), id: first.Jobs[0].ID}.encode()
		for _, c := range []struct{ name, cursor string }{{"first", ""}, {"middle", mid}} {
			b.Run(fmt.Sprintf("jobs=%d/%s", n, c.name), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					pg, err := StoredJobs(b.Context(), st, Filter{Cursor: c.cursor})
					if err != nil || len(pg.Jobs) != DefaultPageSize {
						b.Fatalf("%d jobs, %v", len(pg.Jobs), err)
					}
				}
			})
		}
	}
}

// TestStoredJobsPagesLikeSortingAll: StoredJobs keeps only a page's worth
// of records; its pages are those of sorting every record that passes the
// filter, newest first (creation time, then id), and cutting: for random
// stores (with ties in creation time), filters, limits, and cursor chains.
func TestStoredJobsPagesLikeSortingAll(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 4))
	states := []JobState{JobQueued, JobAnalyzing, JobGenerating, JobDone, JobFailed, JobCanceled}
	prios := []string{"high", "normal", "low"}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for round := range 20 {
		st := store.NewMemory()
		n := rng.IntN(120)
		var all []record
		for i := range n {
			r := record{V: 1, ID: keyID(fmt.Sprint(round, "-", i)), Source: fmt.Sprint("deck ", i), Images: 1,
				Priority: prios[rng.IntN(3)], State: states[rng.IntN(len(states))],
				CreatedAt: base.Add(time.Duration(rng.IntN(40)) * time.Second)} // ties on purpose
			data, _ := json.Marshal(r)
			if err := st.PutJob(t.Context(), store.JobRecord{ID: r.ID, Data: data}); err != nil {
				t.Fatal(err)
			}
			all = append(all, r)
		}
		f := Filter{Limit: 1 + rng.IntN(15)}
		if rng.IntN(2) == 0 {
			f.States = []JobState{states[rng.IntN(len(states))], states[rng.IntN(len(states))]}
		}
		if rng.IntN(3) == 0 {
			f.Priority = prios[rng.IntN(3)]
		}
		if rng.IntN(3) == 0 {
			f.Since = base.Add(time.Duration(rng.IntN(40)) * time.Second)
		}
		var want []string
		for _, r := range all {
			if (len(f.States) == 0 || slices.Contains(f.States, r.State)) && (f.Priority == "" || r.Priority == f.Priority) &&
				(f.Since.IsZero() || !r.CreatedAt.Before(f.Since)) {
				want = append(want, r.ID)
			}
		}
		byID := map[string]record{}
		for _, r := range all {
			byID[r.ID] = r
		}
		slices.SortFunc(want, func(a, b string) int {
			return cmp.Or(byID[b].CreatedAt.Compare(byID[a].CreatedAt), cmp.Compare(b, a))
		})
		var got []string
		for pages := 0; ; pages++ {
			pg, err := StoredJobs(t.Context(), st, f)
			if err != nil {
				t.Fatal(err)
			}
			if len(pg.Jobs) > f.Limit || (pg.Next != "" && len(pg.Jobs) != f.Limit) || pages > n+1 {
				t.Fatalf("round %d: page of %d jobs with limit %d, next %q", round, len(pg.Jobs), f.Limit, pg.Next)
			}
			for _, j := range pg.Jobs {
				if j.Analysis != nil || j.Source != byID[j.ID].Source {
					t.Fatalf("round %d: job %s listed as %+v", round, j.ID, j)
				}
				got = append(got, j.ID)
			}
			if pg.Next == "" {
				break
			}
			f.Cursor = pg.Next
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d (%d jobs, filter %+v): pages gave\n%v\nwant\n%v", round, n, f, got, want)
		}
	}
}
