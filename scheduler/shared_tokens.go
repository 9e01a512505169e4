package scheduler

import (
	"github.com/slideshowd/slideshowd/bucket"
	"github.com/slideshowd/slideshowd/store"
)

// sharedTokens is a shared store that enforces each lane's TPM across
// processes (store.Redis): its grants take each record's token budget
// (bucket.Lease.Budget, with bucket.ClassConfig.SharedTPM) from a window
// shared with the other processes, and it adds the tokens requests used
// beyond their estimates to that window at its next grant.
type sharedTokens interface {
	Overran(lane store.LaneID, tokens int64)
}

// overran reports to a sharedTokens store the tokens a sent request used
// beyond its estimate (tokens: the actual count, negative when unknown).
func (l *ledger) overran(lease bucket.Lease, tokens int) {
	if tokens <= lease.Tokens {
		return // the common case, checked first: no overrun
	}
	st, ok := l.store.(sharedTokens)
	if !ok || l.tpm[lease.Class] <= 0 {
		return
	}
	st.Overran(store.LaneID{Project: lease.Project, Class: lease.Class}, int64(tokens-lease.Tokens))
}
