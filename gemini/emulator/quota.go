package emulator

import (
	"slices"
	"sort"
	"time"
)

// window is the length of the sliding per-minute window. An admitted request
// occupies the window for [t, t+window): at t+window it no longer counts.
const window = 60 * time.Second

// quotaKind names one quota dimension.
type quotaKind int

const (
	perDay quotaKind = iota
	perMinute
	tokensPerMinute
)

// violation is one quota a request would exceed.
type violation struct {
	kind  quotaKind
	limit int
	delay time.Duration // until the quota can take the request; 0 for perDay
}

// civilDate is a calendar day in the emulator's location.
type civilDate struct {
	y int
	m time.Month
	d int
}

func dateOf(t time.Time, loc *time.Location) civilDate {
	y, m, d := t.In(loc).Date()
	return civilDate{y, m, d}
}

// admission is one or more requests admitted at the same instant.
type admission struct {
	t      time.Time
	n      int    // requests
	tokens int    // input tokens of all n
	cum    [2]int // requests and tokens of the window log up to this one, inclusive (from an arbitrary base)
}

// measure selects what a window sums: requests or input tokens.
type measure int

const (
	byRequests measure = iota
	byTokens
)

func (a admission) size(m measure) int {
	if m == byRequests {
		return a.n
	}
	return a.tokens
}

// maxLate bounds how late a request may reach the quota check: one received
// more than maxLate before the latest time its lane has counted counts as
// received maxLate before it. Requests reach the check out of time order
// (a request is counted at the time its body was received, then parsed and
// queued for the Emulator's lock), by far less than maxLate; the bound
// keeps the window log to maxLate+window of admissions.
const maxLate = 30 * time.Second

// lane is the quota state of one (project, model). Pure: time is passed in.
// Not safe for concurrent use; the Emulator's lock guards it.
//
// Times may come out of order (within maxLate). A request counted at t
// falls in every sliding window (s-window, s] with s in [t, t+window); it
// is admitted only if each of them, admissions counted later but received
// after t included, has room for it. So no 60 s interval ever holds more
// admitted requests (or input tokens) than the limits, as when the API
// counts each request the moment it arrives; a 429 answered this way means
// the arrivals of some 60 s interval exceeded the limit.
type lane struct {
	win    []admission // admissions that can share a window with a request still to come, in time order, from head
	head   int
	latest time.Time // the latest time counted on the lane

	days map[civilDate]int // requests admitted per day (the days of latest-maxLate and latest)

	maxWin int // most requests admitted in any window so far
	spent  int // requests admitted through Spend

	// What the API saw of this lane's requests, admitted or not.
	sent    []time.Time // arrival of every request that reached the quota check, in time order
	maxSent int         // most arrivals in any window so far
	limited int         // 429s for a per-minute quota (RPM or TPM)
}

// at returns the time to count a request received at t by, t unless it is
// more than maxLate before the latest time counted, and advances latest.
func (l *lane) at(t time.Time) time.Time {
	if l.latest.IsZero() || t.After(l.latest) {
		l.latest = t
	}
	return later(t, l.latest.Add(-maxLate))
}

func later(a, b time.Time) time.Time {
	if a.Before(b) {
		return b
	}
	return a
}

// peak returns the largest sum in one sliding window (s-window, s] among
// those with s in [t, t+window), the windows a request counted at t falls
// in, over n items in time order: item i at when(i), before(i) the sum of
// the items before i (before(n) the sum of all).
func peak(n int, when func(int) time.Time, before func(int) int, t time.Time) int {
	lo := sort.Search(n, func(i int) bool { return when(i).After(t.Add(-window)) })
	hi := sort.Search(n, func(i int) bool { return when(i).After(t) })
	best := before(hi) - before(lo) // the window ending at t
	// The windows ending at the later items: the sum only grows at them.
	for j := hi; j < n && when(j).Before(t.Add(window)); j++ {
		s := when(j)
		for !when(lo).After(s.Add(-window)) {
			lo++
		}
		best = max(best, before(j+1)-before(lo))
	}
	return best
}

func (l *lane) live() []admission { return l.win[l.head:] }

// before is the sum of m over the live admissions before index i.
func (l *lane) before(i int, m measure) int {
	w := l.live()
	switch {
	case i < len(w):
		return w[i].cum[m] - w[i].size(m)
	case len(w) > 0:
		return w[len(w)-1].cum[m]
	}
	return 0
}

// load is the most of m in one window a request counted at t falls in.
func (l *lane) load(t time.Time, m measure) int {
	w := l.live()
	return peak(len(w), func(i int) time.Time { return w[i].t }, func(i int) int { return l.before(i, m) }, t)
}

// arrive records a request that reached the quota check, received at t,
// whatever its answer.
func (l *lane) arrive(t time.Time) {
	t = l.at(t)
	l.maxSent = max(l.maxSent, peak(len(l.sent), func(i int) time.Time { return l.sent[i] }, func(i int) int { return i }, t)+1)
	i := sort.Search(len(l.sent), func(i int) bool { return l.sent[i].After(t) })
	l.sent = slices.Insert(l.sent, i, t)
}

// prune drops admissions that cannot share a window with a request still
// to come (counted at latest-maxLate or later) and days before that one's;
// memory stays bounded by what maxLate+window can hold.
func (l *lane) prune(loc *time.Location) {
	floor := l.latest.Add(-maxLate - window)
	for l.head < len(l.win) && !l.win[l.head].t.After(floor) {
		l.win[l.head] = admission{}
		l.head++
	}
	if l.head == len(l.win) {
		l.win, l.head = l.win[:0], 0
	} else if l.head > 64 && l.head*2 > len(l.win) {
		n := copy(l.win, l.win[l.head:])
		clear(l.win[n:])
		l.win, l.head = l.win[:n], 0
	}
	if len(l.days) > 1 {
		first, last := dateOf(l.latest.Add(-maxLate), loc), dateOf(l.latest, loc)
		for d := range l.days {
			if d != first && d != last {
				delete(l.days, d)
			}
		}
	}
}

// check returns every quota of lim that one more request of tokens input
// tokens, received at t, would exceed, per-day first (the order the real
// API lists them in). The per-day quota is that of t's day; the per-minute
// ones hold for every window t falls in. It does not change the counts.
func (l *lane) check(t time.Time, lim Limits, tokens int, loc *time.Location) []violation {
	t = l.at(t)
	l.prune(loc)
	var vs []violation
	if lim.RPD > 0 && l.days[dateOf(t, loc)] >= lim.RPD {
		vs = append(vs, violation{kind: perDay, limit: lim.RPD})
	}
	if lim.RPM > 0 && l.load(t, byRequests) >= lim.RPM {
		vs = append(vs, violation{kind: perMinute, limit: lim.RPM, delay: l.freedAt(t, byRequests, lim.RPM-1)})
	}
	if lim.TPM > 0 && l.load(t, byTokens)+tokens > lim.TPM {
		// A request larger than TPM never fits: its delay is when the window is empty.
		vs = append(vs, violation{kind: tokensPerMinute, limit: lim.TPM, delay: l.freedAt(t, byTokens, lim.TPM-tokens)})
	}
	return vs
}

// freedAt returns how long after t the windows a request would fall in
// hold at most room of m, or until they are empty if they
// never do (room < 0). The load only drops when an admission leaves the
// window, and never rises after t (no admission is more than maxLate after
// t), so the answer is the first admission's exit that brings it to room.
func (l *lane) freedAt(t time.Time, m measure, room int) time.Duration {
	w := l.live()
	lo := sort.Search(len(w), func(i int) bool { return w[i].t.After(t.Add(-window)) })
	exits := w[lo:]
	if len(exits) == 0 {
		return 0
	}
	i := sort.Search(len(exits), func(i int) bool {
		return room >= 0 && l.load(exits[i].t.Add(window), m) <= room
	})
	i = min(i, len(exits)-1)
	return exits[i].t.Add(window).Sub(t)
}

// room returns how many requests of tokens input tokens each lim admits at
// t, at most n.
func (l *lane) room(t time.Time, lim Limits, tokens, n int, loc *time.Location) int {
	t = l.at(t)
	l.prune(loc)
	if lim.RPD > 0 {
		n = min(n, lim.RPD-l.days[dateOf(t, loc)])
	}
	if lim.RPM > 0 {
		n = min(n, lim.RPM-l.load(t, byRequests))
	}
	if lim.TPM > 0 && tokens > 0 {
		n = min(n, (lim.TPM-l.load(t, byTokens))/tokens)
	}
	return max(n, 0)
}

// admit counts n requests of tokens input tokens each, received at t, in
// the window and on t's day. Call check first.
func (l *lane) admit(t time.Time, n, tokens int, loc *time.Location) {
	t = l.at(t)
	l.prune(loc)
	// Only the windows t falls in change: the largest of them is the new
	// candidate for the most in any window.
	l.maxWin = max(l.maxWin, l.load(t, byRequests)+n)
	w := l.live()
	i := sort.Search(len(w), func(i int) bool { return !w[i].t.Before(t) })
	if i == len(w) || !w[i].t.Equal(t) {
		l.win = slices.Insert(l.win, l.head+i, admission{t: t, cum: [2]int{l.before(i, byRequests), l.before(i, byTokens)}})
		w = l.live()
	}
	w[i].n += n
	w[i].tokens += n * tokens
	for j := i; j < len(w); j++ { // only the few received after t: requests come nearly in order
		w[j].cum[byRequests] += n
		w[j].cum[byTokens] += n * tokens
	}
	if l.days == nil {
		l.days = make(map[civilDate]int)
	}
	l.days[dateOf(t, loc)] += n
}

// today is the number of requests admitted on now's day.
func (l *lane) today(now time.Time, loc *time.Location) int {
	return l.days[dateOf(now, loc)]
}
