package scheduler

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// sharedStore is a Store whose quota state is shared with other processes
// (store.Redis): its Reserve is a grant that the cluster may refuse (a
// *store.GrantError), it publishes other processes' cooldowns, exhaustion,
// lane stops and resumes and disabled keys, and it counts the live
// processes by heartbeat. Run watches its events and keeps its heartbeat
// while it runs.
type sharedStore interface {
	Watch(ctx context.Context, ready chan<- struct{}, fn func(store.SharedEvent)) error
	Heartbeat(ctx context.Context) (int, error)
	Leave(ctx context.Context) error
}

// pendingStore is a shared Store that keeps changes of keys and lane stops
// made while its Redis is unreachable, to push them when it answers
// (store.Redis.Pending).
type pendingStore interface {
	Pending() (keys []string, lanes []store.LaneID)
}

// laneResumer is a shared Store that resumes a stopped lane in every
// process of the cluster (store.Redis.ResumeLane).
type laneResumer interface {
	ResumeLane(ctx context.Context, l store.LaneID) error
}

// HeartbeatEvery is how often Run renews the process's heartbeat in a shared
// store (its TTL, 15 s by default, is three of these): HeartbeatEvery after
// the last one, which a grant may have carried (beater).
const HeartbeatEvery = 5 * time.Second

// beater is a shared store whose grants carry the heartbeat when it is due
// (store.Redis.Beat): Run calls Beat HeartbeatEvery after the last one,
// and Beat skips the heartbeat's round trip when a grant carried one since.
type beater interface {
	Beat(ctx context.Context, fresh time.Duration) (int, error)
	LastBeat() time.Time
}

// runShared watches the shared store's events and renews the heartbeat
// until ctx ends; it returns when both goroutines have.
func (s *Scheduler) runShared(ctx context.Context, sh sharedStore) {
	var wg sync.WaitGroup
	wg.Go(func() {
		subscribed := make(chan struct{})
		ready := subscribed
		wg.Go(func() {
			select {
			case <-subscribed:
				s.log.Debug().Msg("watching the cluster's events")
			case <-ctx.Done():
			}
		})
		for ctx.Err() == nil {
			err := sh.Watch(ctx, ready, s.applyShared)
			ready = nil
			if err == nil || ctx.Err() != nil {
				return
			}
			s.log.Warn().Err(err).Msg("watching the cluster's events failed; retrying at the next heartbeat (grants still see every lane's state)")
			t := time.NewTimer(HeartbeatEvery)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	})
	wg.Go(func() {
		// Every HeartbeatEvery from the last heartbeat: a grant may have
		// carried one since (beater). With a beater, the first at once:
		// grants carry heartbeats from Beat's first call on.
		bt, riding := sh.(beater)
		first := HeartbeatEvery
		if riding {
			first = 0
		}
		tick := time.NewTimer(first)
		defer tick.Stop()
		failing := false
		restarts := 0
		if r, ok := sh.(interface{ Restarts() int }); ok {
			restarts = r.Restarts()
		}
		outages := 0
		if o, ok := sh.(interface{ Outages() int }); ok {
			outages = o.Outages()
		}
		for {
			select {
			case <-ctx.Done():
				lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
				_ = sh.Leave(lctx)
				cancel()
				return
			case <-tick.C:
			}
			// A heartbeat also probes an unreachable Redis and reconciles
			// when it answers again: bounded, so that the next one comes
			// on time (go-redis's dial retries may take longer).
			// Another call may have found Redis unreachable first.
			down := failing
			if u, ok := sh.(interface{ Unreachable() bool }); ok && u.Unreachable() {
				down = true
			}
			hctx, cancel := context.WithTimeout(ctx, HeartbeatEvery)
			var n int
			var err error
			if riding {
				// Sent unless a grant carried one since the last
				// (then the next is due HeartbeatEvery from that one).
				n, err = bt.Beat(hctx, HeartbeatEvery)
			} else {
				n, err = sh.Heartbeat(hctx)
			}
			next := HeartbeatEvery
			if riding && err == nil {
				if last := bt.LastBeat(); !last.IsZero() {
					next = min(HeartbeatEvery, max(HeartbeatEvery/10, HeartbeatEvery-time.Since(last)))
				}
			}
			tick.Reset(next)
			if err == nil {
				// The shared day counts, for daily protection: read by
				// the heartbeat itself.
				s.heartbeatDays(hctx)
				s.releaseJoined(time.Now())
			}
			cancel()
			if r, ok := sh.(interface{ Restarts() int }); ok {
				if n := r.Restarts(); n > restarts {
					restarts = n
					s.log.Warn().Msg("Redis lost the cluster's state (restarted empty): this process added its day counts and recent grants again; until every slot of its last view of the cluster may have left the window (up to 91 s plus the window margin; a TTL more after an outage) its grants stay within its share of that view")
				}
			}
			// Processes presumed dead after an outage, charged their
			// share (store.Redis.DeadCharges): one line each.
			if dc, ok := sh.(interface{ DeadCharges() []store.DeadCharge }); ok {
				for _, c := range dc.DeadCharges() {
					s.logDeadCharge(c)
				}
			}
			// A dead life's day charge replaced by what its data
			// directory recorded (store.Redis.DeadFixes): one line per
			// lane.
			if df, ok := sh.(interface{ DeadFixes() []store.DeadFix }); ok {
				for _, f := range df.DeadFixes() {
					s.logDeadFix(f)
				}
			}
			// A process started with other limits while Redis had lost
			// the registrations (restarted empty): said at every
			// heartbeat until it stops (GET /healthz says degraded).
			if lc, ok := sh.(interface{ LimitsConflict() error }); ok && err == nil {
				if cerr := lc.LimitsConflict(); cerr != nil {
					s.log.Error().Err(cerr).Msg("a live process of the cluster has other limits for a lane; this one goes on with its own: keep the limits equal in every process")
				}
			}
			// An outage this loop did not see: another call failed and
			// a retry in the grace reached Redis before this heartbeat
			// (store.Redis: no share was used).
			missed := false
			if o, ok := sh.(interface{ Outages() int }); ok {
				if m := o.Outages(); m > outages {
					outages = m
					missed = err == nil && !down
				}
			}
			switch {
			case err != nil && !failing:
				failing = true
				s.log.Warn().Err(err).Msg("heartbeat to the cluster failed: Redis unreachable; each lane goes on with the grants in hand, and with this process's safe share from a heartbeat interval and a second after the first failed call unless Redis answers by then (GET /healthz says degraded)")
			case err == nil && down:
				failing = false
				s.log.Info().Int("processes", n).Msg("heartbeat to the cluster restored: what this process sent on its share, and the keys and lane stops it changed meanwhile, are in Redis again")
			case missed:
				s.log.Warn().Int("processes", n).Msg("a call to Redis failed and Redis answered again within the grace (a heartbeat interval and a second): this process took no share meanwhile; the keys and lane stops it changed meanwhile are in Redis again")
			}
		}
	})
	wg.Wait()
}

// releaseJoined ends the lanes' HoldJoin holds once the store no longer
// holds this process as it joined (store.Redis.Joining: the heartbeats
// that held it beat again, released before the hold's end), so that each
// lane asks Redis again at once rather than at the hold's end. Called
// after each heartbeat.
func (s *Scheduler) releaseJoined(now time.Time) {
	j, ok := s.store.(interface{ Joining() bool })
	if !ok || j.Joining() {
		return
	}
	for _, r := range s.order {
		released := false
		for _, k := range s.cfg.Keys {
			if r.class.Unhold(k.Project, HoldJoin, now) {
				released = true
			}
		}
		if released {
			s.log.Debug().Str("class", r.name).Msg("the cluster no longer holds this process as it joined: its lanes ask again")
			r.signal()
		}
	}
}

// logDeadCharge logs, at warning level, a process of the cluster presumed
// dead after an outage and charged its share: its name and, per lane, the
// window slots, day units and tokens added (no key).
func (s *Scheduler) logDeadCharge(c store.DeadCharge) {
	var b strings.Builder
	for i, l := range c.Lanes {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %d slots, %d units of %s", l.Lane, l.Slots, l.Units, l.Day)
		if l.Tokens > 0 {
			fmt.Fprintf(&b, ", %d tokens", l.Tokens)
		}
	}
	s.log.Warn().Str("process", c.Process).Str("lanes", b.String()).
		Msg("a process of the cluster did not reach Redis again after the outage: presumed dead, what it may have sent on its share is counted in the shared windows and day counts")
}

// logDeadFix logs, at info level, one lane's day charge of a dead life
// replaced by what its data directory recorded: the life, the lane, the
// Pacific day, the units charged before and counted now, the units
// recorded and the day count after (no key).
func (s *Scheduler) logDeadFix(f store.DeadFix) {
	s.log.Info().Str("life", f.Life).Str("lane", f.Lane.String()).Str("day", f.Day).Int("charged", f.Charged).
		Int("counted", f.Counted).Int("recorded", f.Recorded).Int("day_count", f.Count).
		Msg("a dead process's day charge replaced by what its data directory recorded it took on its share and Redis did not have")
}

// applyShared applies another process's event to this process's lanes and
// keys in memory; the store wrote it to this process's own store before
// (store.Redis.Watch: the data directory agrees with the cluster, and a
// later join does not share again what the cluster superseded), and a
// failed write is logged. Unknown kinds are ignored. A stop applies
// only when it was made under this process's configuration of the class
// (ClassConfig's model and limits), as at start.
func (s *Scheduler) applyShared(ev store.SharedEvent) {
	if ev.LocalErr != nil {
		s.log.Warn().Err(ev.LocalErr).Str("change", ev.Kind).Str("key", ev.KeyID).Str("class", ev.Lane.Class).
			Str("project", ev.Lane.Project).Str("from", ev.Process).
			Msg("a change made by another process is applied here but not in this process's store: its data directory says otherwise until the next start joins the cluster")
	}
	switch ev.Kind {
	case "cool", "exhausted":
		r := s.classes[ev.Lane.Class]
		if r == nil {
			return
		}
		if ev.Kind == "cool" {
			r.class.CoolDown(ev.Lane.Project, ev.Until)
		} else {
			r.class.ExhaustUntil(ev.Lane.Project, ev.Until)
		}
		s.log.Debug().Str("class", ev.Lane.Class).Str("project", ev.Lane.Project).Str("state", ev.Kind).
			Time("until", ev.Until).Str("from", ev.Process).Msg("lane state from another process")
	case "stopped", "resumed":
		r := s.classes[ev.Lane.Class]
		if r == nil {
			return
		}
		if ev.Kind == "resumed" {
			if !r.class.Resume(ev.Lane.Project) {
				return
			}
			s.log.Info().Str("class", ev.Lane.Class).Str("project", ev.Lane.Project).Str("from", ev.Process).
				Msg("lane resumed by another process")
			break
		}
		if ev.Config != r.cfg.stopConfig() {
			// Stopped under another model or limits: the quota this
			// process's configuration asks for may exist.
			s.log.Info().Str("class", ev.Lane.Class).Str("project", ev.Lane.Project).Str("reason", ev.Reason).
				Str("their_config", ev.Config).Str("config", r.cfg.stopConfig()).Str("from", ev.Process).
				Msg("lane stopped by another process under another configuration of the class: not stopped here")
			return
		}
		if !r.class.Stop(ev.Lane.Project, ev.Reason) {
			return
		}
		s.log.Error().Str("class", ev.Lane.Class).Str("project", ev.Lane.Project).Str("reason", ev.Reason).
			Str("from", ev.Process).Msg("lane stopped by another process until an operator resumes it or the configuration changes")
	case "disabled":
		if _, ok := s.pool.KeyProject(ev.KeyID); !ok {
			return
		}
		s.setDisabled(ev.KeyID, ev.Reason, time.Now())
		s.log.Warn().Str("key", ev.KeyID).Str("reason", ev.Reason).Str("from", ev.Process).Msg("key disabled by another process")
	case "enabled":
		if _, ok := s.pool.KeyProject(ev.KeyID); !ok {
			return
		}
		s.setEnabled(ev.KeyID)
		s.log.Info().Str("key", ev.KeyID).Str("from", ev.Process).Msg("key enabled by another process")
	default:
		return
	}
	for _, r := range s.order {
		r.signal()
	}
}

// Words of a lane the cluster holds: a grant refused with no 429 behind
// it (LaneSummary.Held, KeyClassState.Reason, Wait's reason).
const (
	// HoldWindow: the cluster's shared 60 s window has no room.
	HoldWindow = "waiting for the cluster's window"
	// HoldTokens: the cluster's shared TPM window has no room. Held until
	// enough budgets leave the window, at most a heartbeat interval: other
	// processes may give unused budget back sooner.
	HoldTokens = "waiting for the cluster's token window"
	// HoldDay: the lane's shared day count is at RPD (or has fewer units
	// left than a grant). Held until the next Pacific midnight, or until
	// the shared count is below RPD again (other processes gave unused
	// units back), as the next heartbeat reads it (every HeartbeatEvery):
	// then the lane asks again. A grant refused with units still left (it
	// asked for more than the day had) holds for one HeartbeatEvery.
	HoldDay = "cluster day full"
	// HoldShare: Redis is unreachable and this process used its safe share.
	HoldShare = "Redis unreachable: share used"
	// HoldConfirming: a call to Redis failed less than a heartbeat
	// interval and a second ago (store.Redis's grace): Redis may still
	// answer the other processes, so this process takes no share yet,
	// sends only what its grants in hand cover and tries Redis again
	// every second.
	HoldConfirming = "Redis unreachable: confirming"
	// HoldRecovery: Redis answers again (after an outage, or after it
	// restarted empty) and this process used its share of the recovery,
	// during which its grants also stay within the share of its last view
	// of the cluster (store.Redis: a heartbeat TTL after an outage; after
	// Redis lost its state, until every slot granted before may have left
	// the window, 91 s plus the window margin).
	HoldRecovery = "Redis back, recovering: share used"
	// HoldRecoveryNone: as HoldRecovery, but this process has no share
	// of the lane yet (store.GrantError.NoShare: it took nothing of it
	// since Redis lost its state or the outage began: its last view had
	// no window slot of the lane leaving before now, the day's share is
	// 0, or it had no recent view at all). Held until the recovery's
	// end, or until a slot of its view leaves the window if sooner.
	HoldRecoveryNone = "Redis back, recovering: no share yet"
	// HoldJoin: this process joined the cluster while another may still
	// be about to reach Redis from an outage (its heartbeat was overdue),
	// or recover from one: it takes no grant until what the others sent
	// on their share is in Redis (store.Redis.Joining: 12 s when a
	// heartbeat was overdue; until a recovery's end plus a heartbeat
	// interval and a second after an outage).
	HoldJoin = "joined, waiting for the cluster"
)

// HoldWords words a lane held for reason (a Hold... constant) until until,
// as of now, for the status page and the CLI: "waiting for the cluster's
// window (13s)", "cluster day full until Dec 2 00:00 PST" (HoldDay until
// midnight, in Pacific time; a HoldDay of a heartbeat interval or less, a
// grant refused with units left, reads "cluster day full (5s)").
func HoldWords(reason string, until, now time.Time) string {
	if reason == HoldDay && until.Sub(now) > HeartbeatEvery {
		return reason + " until " + until.In(bucket.Pacific).Format("Jan 2 15:04 MST")
	}
	return reason + " (" + ShortDuration(until.Sub(now)) + ")"
}

// refused applies a grant the cluster refused to the lane: it waits until
// the shared window frees room (held; the token window: at most
// HeartbeatEvery, budgets may be given back sooner), or the cooldown or exhaustion another
// process reported after its 429 ends (cooling, exhausted), or (the shared
// day full) the next Pacific midnight, released sooner by the heartbeat
// that reads the lane's shared count below RPD (applySharedDays); with
// units still left (the grant asked for more), one HeartbeatEvery. It
// reports whether err was such a refusal.
func (r *runner) refused(err error, lease bucket.Lease, now time.Time) bool {
	var ge *store.GrantError
	if !errors.As(err, &ge) {
		return false
	}
	hold := ""
	switch ge.Reason {
	case "day":
		r.class.SharedDay(lease.Project, lease.Day, ge.Day, now)
		hold = HoldDay
		until := bucket.NextMidnight(now, r.s.cfg.Location)
		if ge.Day < r.class.Limits().RPD {
			// Units left, fewer than asked (another process took some
			// since the lane's last count): the next grant asks for no
			// more than are left (bucket sizes it from this count).
			until = earliest(until, now.Add(HeartbeatEvery))
		}
		r.class.Hold(lease.Project, until, hold)
	case "exhausted": // another process's per-day 429
		r.class.ExhaustUntil(lease.Project, ge.Until)
	case "cool": // another process's per-minute 429
		r.class.CoolDown(lease.Project, ge.Until)
	default:
		switch ge.Reason {
		case "window":
			hold = HoldWindow
		case "tpm":
			hold = HoldTokens
		case "share":
			// The same refusal while Redis is unreachable and during the
			// recovery after it answers again: say which.
			hold = HoldShare
			if ge.Confirming {
				hold = HoldConfirming
			} else if u, ok := r.s.store.(interface{ Unreachable() bool }); ok && !u.Unreachable() {
				hold = HoldRecovery
				if ge.NoShare {
					hold = HoldRecoveryNone
				}
				if j, ok := r.s.store.(interface{ Joining() bool }); ge.Joining || (ok && j.Joining()) {
					// From the refusal, not from a second read alone: a
					// heartbeat may release the hold in between, and a
					// lane held until the hold's end under another name
					// would not be released (releaseJoined ends HoldJoin
					// holds only).
					hold = HoldJoin
				}
			}
		default:
			hold = "the cluster refused a grant (" + ge.Reason + ")"
		}
		until := ge.Until
		if ge.Reason == "tpm" {
			// Until is when the budgets that refused it leave the window
			// (up to a minute away); another process may give its unused
			// budget back before then (at its lane's next grant, its clean
			// stop): ask again at most a heartbeat interval later.
			until = earliest(until, now.Add(HeartbeatEvery))
		}
		r.class.Hold(lease.Project, until, hold)
		if hold == HoldJoin {
			// The heartbeat may have released the join before this hold
			// was set, and releaseJoined then found nothing to end: read
			// again after setting it (a release after this read runs
			// releaseJoined after it, which ends the hold).
			if j, ok := r.s.store.(interface{ Joining() bool }); ok && !j.Joining() && r.class.Unhold(lease.Project, HoldJoin, now) {
				r.signal()
			}
		}
	}
	r.s.log.Debug().Str("class", r.name).Str("project", lease.Project).Str("reason", ge.Reason).Str("hold", hold).
		Time("until", ge.Until).Msg("the cluster refused a grant; the lane waits")
	return true
}
