package store

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// Memory is a Store that keeps everything in memory: nothing survives the
// process. It is meant for tests and for embedding where durability is not
// needed. A Memory is safe for concurrent use. The zero value is an empty,
// open Memory that keeps DefaultHistory days.
type Memory struct {
	history int // days kept; 0 means DefaultHistory

	mu       sync.RWMutex
	closed   bool
	daily    map[string]map[LaneID]int // day -> lane -> count
	newest   string                    // newest day in daily, "" when none
	lanes    map[LaneID]LaneState
	disabled map[string]DisabledKey
	enabled  map[string]time.Time // EnableTimes
	resumed  map[LaneID]time.Time // ResumeTimes
	jobs     map[string][]byte
	windows  map[LaneID][]Sent
	records  []Record
}

var (
	_ Store  = (*Memory)(nil)
	_ Ledger = (*Memory)(nil)
)

// NewMemory returns an empty Memory. It takes at most one Options, of which
// only History applies. Like time.NewTicker with a bad duration, it panics on
// invalid options or more than one Options: those are programming errors.
func NewMemory(opts ...Options) *Memory {
	var o Options
	switch len(opts) {
	case 0:
	case 1:
		o = opts[0]
	default:
		panic(fmt.Sprintf("store: NewMemory: %d Options, want at most 1", len(opts)))
	}
	if err := o.Validate(); err != nil {
		panic("store: NewMemory: " + err.Error())
	}
	return &Memory{history: o.withDefaults().History}
}

func (m *Memory) historyDays() int {
	if m.history == 0 {
		return DefaultHistory
	}
	return m.history
}

// ready reports why a call cannot run; the caller holds m.mu.
func (m *Memory) ready(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.closed {
		return ErrClosed
	}
	return nil
}

// AddDaily implements Store.
func (m *Memory) AddDaily(ctx context.Context, day string, lane LaneID, n int) (int, error) {
	if err := checkAdd(day, lane, n); err != nil {
		return 0, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return 0, err
	}
	h := m.historyDays()
	if m.newest != "" {
		if oldest := oldestKept(m.newest, h); day < oldest {
			return 0, tooOld(day, oldest, h)
		}
	}
	counts := m.daily[day]
	total, err := addCount(day, lane, counts[lane], n)
	if err != nil {
		return 0, err
	}
	if counts == nil {
		if m.daily == nil {
			m.daily = make(map[string]map[LaneID]int)
		}
		counts = make(map[LaneID]int)
		m.daily[day] = counts
		if day > m.newest {
			m.newest = day
			oldest := oldestKept(day, h)
			for d := range m.daily {
				if d < oldest {
					delete(m.daily, d)
				}
			}
		}
	}
	counts[lane] = total
	return total, nil
}

// Daily implements Store.
func (m *Memory) Daily(ctx context.Context, day string) ([]DailyCount, error) {
	if err := checkDay(day); err != nil {
		return nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	var out []DailyCount
	for lane, c := range m.daily[day] {
		out = append(out, DailyCount{Day: day, Lane: lane, Count: c})
	}
	slices.SortFunc(out, compareCounts)
	return out, nil
}

// History implements Store.
func (m *Memory) History(ctx context.Context) ([]DailyCount, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	var out []DailyCount
	for day, counts := range m.daily {
		for lane, c := range counts {
			out = append(out, DailyCount{Day: day, Lane: lane, Count: c})
		}
	}
	slices.SortFunc(out, compareCounts)
	return out, nil
}

// SetLaneState implements Store. A state with a stop forgets the lane's
// resume time (ResumeTimes).
func (m *Memory) SetLaneState(ctx context.Context, s LaneState) error {
	if err := checkLane(s.Lane); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	m.putLaneState(s)
	return nil
}

// putLaneState writes s (deletes it when empty); a stop forgets the lane's
// resume time. Call with mu held.
func (m *Memory) putLaneState(s LaneState) {
	if s.Stopped != "" {
		delete(m.resumed, s.Lane)
	}
	if s.empty() {
		delete(m.lanes, s.Lane)
		return
	}
	if m.lanes == nil {
		m.lanes = make(map[LaneID]LaneState)
	}
	s.CoolUntil = s.CoolUntil.UTC()
	s.ExhaustedUntil = s.ExhaustedUntil.UTC()
	m.lanes[s.Lane] = s
}

// ResumeLaneAt implements ResumeTimes.
func (m *Memory) ResumeLaneAt(ctx context.Context, l LaneID, at time.Time) error {
	if err := checkLane(l); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	st, ok := m.lanes[l]
	if !ok {
		st = LaneState{Lane: l}
	}
	st.Stopped, st.Config = "", ""
	m.putLaneState(st)
	if m.resumed == nil {
		m.resumed = make(map[LaneID]time.Time)
	}
	m.resumed[l] = at.UTC()
	return nil
}

// LanesResumed implements ResumeTimes.
func (m *Memory) LanesResumed(ctx context.Context) (map[LaneID]time.Time, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	return maps.Clone(m.resumed), nil
}

// LaneStates implements Store.
func (m *Memory) LaneStates(ctx context.Context) ([]LaneState, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	var out []LaneState
	for _, s := range m.lanes {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b LaneState) int { return compareLanes(a.Lane, b.Lane) })
	return out, nil
}

// DisableKey implements Store.
func (m *Memory) DisableKey(ctx context.Context, d DisabledKey) error {
	if err := checkID("KeyID", d.KeyID); err != nil {
		return err
	}
	if len(d.Fingerprint) > MaxIDLen {
		return fmt.Errorf("%w: Fingerprint: %d bytes: at most %d", ErrInvalid, len(d.Fingerprint), MaxIDLen)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	if m.disabled == nil {
		m.disabled = make(map[string]DisabledKey)
	}
	d.At = d.At.UTC()
	m.disabled[d.KeyID] = d
	delete(m.enabled, d.KeyID)
	return nil
}

// EnableKey implements Store: EnableKeyAt at the current time.
func (m *Memory) EnableKey(ctx context.Context, keyID string) error {
	return m.EnableKeyAt(ctx, keyID, time.Now())
}

// EnableKeyAt implements EnableTimes.
func (m *Memory) EnableKeyAt(ctx context.Context, keyID string, at time.Time) error {
	if err := checkID("keyID", keyID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	delete(m.disabled, keyID)
	if m.enabled == nil {
		m.enabled = make(map[string]time.Time)
	}
	m.enabled[keyID] = at.UTC()
	return nil
}

// KeysEnabled implements EnableTimes.
func (m *Memory) KeysEnabled(ctx context.Context) (map[string]time.Time, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	return maps.Clone(m.enabled), nil
}

// DisabledKeys implements Store.
func (m *Memory) DisabledKeys(ctx context.Context) ([]DisabledKey, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return nil, err
	}
	var out []DisabledKey
	for _, id := range slices.Sorted(maps.Keys(m.disabled)) {
		out = append(out, m.disabled[id])
	}
	return out, nil
}

// PutJob implements Store.
func (m *Memory) PutJob(ctx context.Context, j JobRecord) error {
	if err := checkID("ID", j.ID); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	if m.jobs == nil {
		m.jobs = make(map[string][]byte)
	}
	m.jobs[j.ID] = cloneData(j.Data)
	return nil
}

// Job implements Store.
func (m *Memory) Job(ctx context.Context, id string) (JobRecord, error) {
	if err := checkID("id", id); err != nil {
		return JobRecord{}, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return JobRecord{}, err
	}
	data, ok := m.jobs[id]
	if !ok {
		return JobRecord{}, fmt.Errorf("job %s: %w", quote(id), ErrNotFound)
	}
	return JobRecord{ID: id, Data: cloneData(data)}, nil
}

// Jobs implements Store. It lists the ids first, then looks each record up
// again just before calling fn, without holding the lock while fn runs.
func (m *Memory) Jobs(ctx context.Context, fn func(JobRecord) bool) error {
	m.mu.RLock()
	if err := m.ready(ctx); err != nil {
		m.mu.RUnlock()
		return err
	}
	ids := slices.Sorted(maps.Keys(m.jobs))
	m.mu.RUnlock()

	for _, id := range ids {
		m.mu.RLock()
		err := m.ready(ctx)
		data, ok := m.jobs[id]
		data = cloneData(data)
		m.mu.RUnlock()
		if err != nil {
			return err
		}
		if ok && !fn(JobRecord{ID: id, Data: data}) {
			return nil
		}
	}
	return nil
}

// DeleteJob implements Store.
func (m *Memory) DeleteJob(ctx context.Context, id string) error {
	if err := checkID("id", id); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	delete(m.jobs, id)
	return nil
}

// Close implements Store. It drops the contents.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	m.daily, m.lanes, m.disabled, m.jobs, m.enabled, m.resumed = nil, nil, nil, nil, nil, nil
	m.newest = ""
	return nil
}

// cloneData copies job data; empty data becomes nil.
func cloneData(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// Reserve implements Ledger.
func (m *Memory) Reserve(ctx context.Context, r Record) (int, error) {
	if err := checkRecord(r); err != nil {
		return 0, err
	}
	var total int
	if r.Units > 0 {
		var err error
		if total, err = m.AddDaily(ctx, r.Day, r.Lane, r.Units); err != nil {
			return 0, err
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return 0, err
	}
	if r.Units == 0 {
		total = m.daily[r.Day][r.Lane]
	}
	cutoff := r.At.Add(-RecordKeep)
	i := 0
	for i < len(m.records) && m.records[i].Until.Before(cutoff) {
		i++
	}
	r.At, r.Until = r.At.UTC(), r.Until.UTC()
	m.records = append(m.records[i:], r)
	return total, nil
}

// Settle implements Ledger.
func (m *Memory) Settle(ctx context.Context, s Settlement) error {
	if err := checkSettlement(s); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.ready(ctx); err != nil {
		return err
	}
	for _, g := range s.GiveBack {
		if counts := m.daily[g.Day]; counts != nil && g.Count > 0 {
			if _, ok := counts[g.Lane]; ok {
				counts[g.Lane] = max(0, counts[g.Lane]-g.Count)
			}
		}
	}
	m.records = nil
	m.windows = make(map[LaneID][]Sent, len(s.Windows))
	for _, w := range s.Windows {
		if len(w.Sent) == 0 {
			continue
		}
		sent := make([]Sent, len(w.Sent))
		for i, e := range w.Sent {
			sent[i] = Sent{At: e.At.UTC(), Tokens: e.Tokens}
		}
		m.windows[w.Lane] = sent
	}
	return nil
}

// LedgerRecords implements Ledger.
func (m *Memory) LedgerRecords(ctx context.Context) (LedgerRecords, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if err := m.ready(ctx); err != nil {
		return LedgerRecords{}, err
	}
	var out LedgerRecords
	for lane, sent := range m.windows {
		out.Windows = append(out.Windows, Window{Lane: lane, Sent: slices.Clone(sent)})
	}
	slices.SortFunc(out.Windows, func(a, b Window) int { return compareLanes(a.Lane, b.Lane) })
	out.Records = slices.Clone(m.records)
	return out, nil
}
