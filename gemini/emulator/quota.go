package emulator

import "time"

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
	n      int // requests
	tokens int // input tokens of all n
}

// lane is the quota state of one (project, model). Pure: time is passed in.
// Not safe for concurrent use; the Emulator's lock guards it.
type lane struct {
	win    []admission // admissions younger than window, oldest first, from head
	head   int
	winN   int // requests in win[head:]
	winTok int // input tokens of win[head:]

	day  civilDate
	dayN int // requests admitted on day

	maxWin int // most requests in any window so far
	spent  int // requests admitted through Spend

	// What the API saw of this lane's requests, admitted or not.
	sent     []time.Time // arrival of every request that reached the quota check
	sentHead int         // first of sent younger than window at the last arrival
	maxSent  int         // most arrivals in any window so far
	limited  int         // 429s for a per-minute quota (RPM or TPM)
}

// arrive records a request that reached the quota check at now, whatever
// its answer. Arrivals come in time order (the Emulator's lock).
func (l *lane) arrive(now time.Time) {
	l.sent = append(l.sent, now)
	for !now.Before(l.sent[l.sentHead].Add(window)) {
		l.sentHead++
	}
	l.maxSent = max(l.maxSent, len(l.sent)-l.sentHead)
}

// prune drops admissions that left the window by now; memory stays bounded
// by what one window can hold.
func (l *lane) prune(now time.Time) {
	for l.head < len(l.win) && !now.Before(l.win[l.head].t.Add(window)) {
		l.winN -= l.win[l.head].n
		l.winTok -= l.win[l.head].tokens
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
}

func (l *lane) rollDay(now time.Time, loc *time.Location) {
	if d := dateOf(now, loc); d != l.day {
		l.day, l.dayN = d, 0
	}
}

// check returns every quota of lim that one more request of tokens input
// tokens would exceed at now, per-day first (the order the real API lists
// them in). It does not change the counts beyond pruning and rolling the day.
func (l *lane) check(now time.Time, lim Limits, tokens int, loc *time.Location) []violation {
	l.prune(now)
	l.rollDay(now, loc)
	var vs []violation
	if lim.RPD > 0 && l.dayN >= lim.RPD {
		vs = append(vs, violation{kind: perDay, limit: lim.RPD})
	}
	if lim.RPM > 0 && l.winN >= lim.RPM {
		// The request fits once winN-RPM+1 requests have left the window.
		vs = append(vs, violation{kind: perMinute, limit: lim.RPM, delay: l.freedAt(now, func(a admission) int { return a.n }, l.winN-lim.RPM+1)})
	}
	if lim.TPM > 0 && l.winTok+tokens > lim.TPM {
		// A request larger than TPM never fits: its delay is when the window is empty.
		vs = append(vs, violation{kind: tokensPerMinute, limit: lim.TPM, delay: l.freedAt(now, func(a admission) int { return a.tokens }, l.winTok+tokens-lim.TPM)})
	}
	return vs
}

// freedAt returns how long until admissions worth need (as measured by size)
// have left the window, or until the window is empty if they never do.
func (l *lane) freedAt(now time.Time, size func(admission) int, need int) time.Duration {
	var d time.Duration
	freed := 0
	for _, a := range l.win[l.head:] {
		freed += size(a)
		d = a.t.Add(window).Sub(now)
		if freed >= need {
			break
		}
	}
	return d
}

// room returns how many requests of tokens input tokens each lim admits at
// now, at most n. Call after check (which prunes and rolls the day).
func (l *lane) room(lim Limits, tokens, n int) int {
	if lim.RPD > 0 {
		n = min(n, lim.RPD-l.dayN)
	}
	if lim.RPM > 0 {
		n = min(n, lim.RPM-l.winN)
	}
	if lim.TPM > 0 && tokens > 0 {
		n = min(n, (lim.TPM-l.winTok)/tokens)
	}
	return max(n, 0)
}

// admit counts n requests of tokens input tokens each at now. Call check first.
func (l *lane) admit(now time.Time, n, tokens int, loc *time.Location) {
	l.prune(now)
	l.rollDay(now, loc)
	if k := len(l.win); k > l.head && l.win[k-1].t.Equal(now) {
		l.win[k-1].n += n
		l.win[k-1].tokens += n * tokens
	} else {
		l.win = append(l.win, admission{t: now, n: n, tokens: n * tokens})
	}
	l.winN += n
	l.winTok += n * tokens
	l.dayN += n
	l.maxWin = max(l.maxWin, l.winN)
}

// today is the number of requests admitted on now's day.
func (l *lane) today(now time.Time, loc *time.Location) int {
	if dateOf(now, loc) != l.day {
		return 0
	}
	return l.dayN
}
