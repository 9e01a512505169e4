package store_test

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/slideshowd/slideshowd/store"
)

var seedFlag = flag.Uint64("seed", 0, "seed of TestRandomBoltAgainstMemory; 0 picks one from the clock")

// TestRandomBoltAgainstMemory applies the same random operations to a Bolt
// file and to a Memory, re-opening the Bolt file now and then, and checks
// that every result and every error agree. Times are compared by their
// printed form, which also checks that both stores normalise to UTC.
func TestRandomBoltAgainstMemory(t *testing.T) {
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (rerun: go test ./store -run TestRandomBoltAgainstMemory -seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>32|1))

	opts := store.Options{History: 2 + rng.IntN(8), NoSync: true}
	t.Logf("History %d", opts.History)
	path := filepath.Join(t.TempDir(), "random.db")
	b := mustOpen(t, path, opts)
	m := store.NewMemory(opts)

	r := &randomOps{rng: rng}
	steps := 3000
	if testing.Short() {
		steps = 500
	}
	reopens := 0
	for i := range steps {
		if rng.IntN(100) == 0 {
			mustClose(t, b)
			b = mustOpen(t, path, opts)
			reopens++
			compareDumps(t, fmt.Sprintf("step %d (re-open)", i), b, m)
			continue
		}
		name, op := r.next()
		gotB, errB := op(b)
		gotM, errM := op(m)
		if sb, sm := fmt.Sprintf("%+v / %v", gotB, errB), fmt.Sprintf("%+v / %v", gotM, errM); sb != sm {
			t.Fatalf("step %d %s: stores disagree\nBolt:   %s\nMemory: %s", i, name, sb, sm)
		}
	}
	compareDumps(t, "end", b, m)
	mustClose(t, b)
	b = mustOpen(t, path, opts)
	compareDumps(t, "end (re-open)", b, m)
	t.Logf("%d steps, %d re-opens, %d days advanced, %d daily units, %d ErrTooOld", steps, reopens, r.today, r.units, r.tooOld)
}

// dump is a store's whole content, printed.
func dump(t *testing.T, s store.Store) string {
	t.Helper()
	return fmt.Sprintf("history %+v\nlanes %+v\ndisabled %+v\njobs %+v",
		mustHistory(t, s), mustLaneStates(t, s), mustDisabled(t, s), allJobs(t, s))
}

func compareDumps(t *testing.T, when string, b, m store.Store) {
	t.Helper()
	if db, dm := dump(t, b), dump(t, m); db != dm {
		t.Fatalf("%s: contents differ\nBolt:\n%s\nMemory:\n%s", when, db, dm)
	}
}

// randomOps draws random store operations.
type randomOps struct {
	rng    *rand.Rand
	today  int // index of the newest day, as in day(i)
	units  int // daily units added (by AddDaily calls, whatever their result)
	tooOld int // ErrTooOld seen
}

type op func(s store.Store) (any, error)

var (
	randomProjects = []string{"p0", "p1", "p2", "projekt-ä"}
	randomClasses  = []string{"text", "image"}
	randomZones    = []*time.Location{time.UTC, time.FixedZone("IST", 5*3600+1800), time.FixedZone("PST", -8*3600)}
)

func (r *randomOps) lane() store.LaneID {
	if r.rng.IntN(50) == 0 {
		return store.LaneID{Project: randomProjects[r.rng.IntN(len(randomProjects))]} // invalid
	}
	return store.LaneID{
		Project: randomProjects[r.rng.IntN(len(randomProjects))],
		Class:   randomClasses[r.rng.IntN(len(randomClasses))],
	}
}

// day returns a day near today, sometimes too old, sometimes malformed.
func (r *randomOps) day() string {
	switch r.rng.IntN(40) {
	case 0:
		return "2026-02-30"
	case 1:
		return day(r.today)[:8]
	}
	return day(r.today - r.rng.IntN(12) + 1)
}

func (r *randomOps) time() time.Time {
	if r.rng.IntN(5) == 0 {
		return time.Time{}
	}
	sec := int64(1_770_000_000) + r.rng.Int64N(100_000_000)
	return time.Unix(sec, r.rng.Int64N(1e9)).In(randomZones[r.rng.IntN(len(randomZones))])
}

func (r *randomOps) id(prefix string, n int) string {
	if r.rng.IntN(60) == 0 {
		return "" // invalid
	}
	return fmt.Sprintf("%s-%02d", prefix, r.rng.IntN(n))
}

func (r *randomOps) bytes(max int) []byte {
	b := make([]byte, r.rng.IntN(max+1))
	for i := range b {
		b[i] = byte(r.rng.IntN(256))
	}
	return b
}

// next returns a named operation, weighted towards AddDaily.
func (r *randomOps) next() (string, op) {
	rng := r.rng
	switch k := rng.IntN(100); {
	case k < 35:
		if rng.IntN(15) == 0 {
			r.today += 1 + rng.IntN(2)
		}
		if rng.IntN(150) == 0 {
			r.today += 5 + rng.IntN(15)
		}
		d, lane, n := r.day(), r.lane(), 1+rng.IntN(500)
		if rng.IntN(50) == 0 {
			n = -rng.IntN(2)
		}
		r.units += n
		first := true
		return fmt.Sprintf("AddDaily(%s, %v, %d)", d, lane, n), func(s store.Store) (any, error) {
			total, err := s.AddDaily(bg, d, lane, n)
			if first && err != nil && isTooOld(err) {
				r.tooOld++
			}
			first = false
			return total, err
		}
	case k < 40:
		d := r.day()
		return "Daily(" + d + ")", func(s store.Store) (any, error) { return s.Daily(bg, d) }
	case k < 44:
		return "History", func(s store.Store) (any, error) { return s.History(bg) }
	case k < 54:
		st := store.LaneState{Lane: r.lane(), CoolUntil: r.time(), ExhaustedUntil: r.time()}
		if rng.IntN(4) == 0 {
			st.CoolUntil, st.ExhaustedUntil = time.Time{}, time.Time{}
		}
		return fmt.Sprintf("SetLaneState(%+v)", st), func(s store.Store) (any, error) { return nil, s.SetLaneState(bg, st) }
	case k < 58:
		return "LaneStates", func(s store.Store) (any, error) { return s.LaneStates(bg) }
	case k < 64:
		d := store.DisabledKey{KeyID: r.id("key", 6), Reason: string(r.bytes(12)), At: r.time()}
		return fmt.Sprintf("DisableKey(%+v)", d), func(s store.Store) (any, error) { return nil, s.DisableKey(bg, d) }
	case k < 68:
		id := r.id("key", 6)
		return "EnableKey(" + id + ")", func(s store.Store) (any, error) { return nil, s.EnableKey(bg, id) }
	case k < 71:
		return "DisabledKeys", func(s store.Store) (any, error) { return s.DisabledKeys(bg) }
	case k < 83:
		j := store.JobRecord{ID: r.id("job", 40), Data: r.bytes(40)}
		return "PutJob(" + j.ID + ")", func(s store.Store) (any, error) { return nil, s.PutJob(bg, j) }
	case k < 89:
		id := r.id("job", 40)
		return "Job(" + id + ")", func(s store.Store) (any, error) { return s.Job(bg, id) }
	case k < 93:
		limit := 1 + rng.IntN(50)
		return fmt.Sprintf("Jobs(first %d)", limit), func(s store.Store) (any, error) {
			var got []store.JobRecord
			err := s.Jobs(bg, func(j store.JobRecord) bool {
				got = append(got, j)
				return len(got) < limit
			})
			return got, err
		}
	default:
		id := r.id("job", 40)
		return "DeleteJob(" + id + ")", func(s store.Store) (any, error) { return nil, s.DeleteJob(bg, id) }
	}
}
