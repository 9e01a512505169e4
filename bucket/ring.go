package bucket

// The ready ring: a circular doubly-linked list of lanes that may serve now,
// walked round-robin from c.cursor.

func (c *Class) pushReady(l *lane) {
	l.where = inReady
	c.nready++
	if c.cursor == nil {
		l.prev, l.next = l, l
		c.cursor = l
		return
	}
	// Insert just before the cursor: the lane is tried last in this round.
	p := c.cursor.prev
	p.next, l.prev = l, p
	l.next, c.cursor.prev = c.cursor, l
}

func (c *Class) removeReady(l *lane) {
	l.where = inNone
	c.nready--
	if l.next == l {
		c.cursor = nil
	} else {
		l.prev.next, l.next.prev = l.next, l.prev
		if c.cursor == l {
			c.cursor = l.next
		}
	}
	l.prev, l.next = nil, nil
}

// The waiting heap: lanes that cannot serve now, ordered by readyAt.

func (c *Class) pushWaiting(l *lane) {
	l.where = inWaiting
	l.heapIdx = len(c.waiting)
	c.waiting = append(c.waiting, l)
	c.up(l.heapIdx)
}

func (c *Class) popWaiting() *lane {
	l := c.waiting[0]
	c.removeWaiting(l)
	return l
}

func (c *Class) removeWaiting(l *lane) {
	i := l.heapIdx
	last := len(c.waiting) - 1
	if i != last {
		c.swap(i, last)
	}
	c.waiting[last] = nil
	c.waiting = c.waiting[:last]
	if i != last {
		if !c.down(i) {
			c.up(i)
		}
	}
	l.heapIdx = -1
	l.where = inNone
}

func (c *Class) fixWaiting(l *lane) {
	if !c.down(l.heapIdx) {
		c.up(l.heapIdx)
	}
}

func (c *Class) swap(i, j int) {
	h := c.waiting
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}

func (c *Class) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if c.waiting[i].readyAt <= c.waiting[j].readyAt {
			break
		}
		c.swap(i, j)
		j = i
	}
}

func (c *Class) down(i0 int) bool {
	i, n := i0, len(c.waiting)
	for {
		j := 2*i + 1
		if j >= n {
			break
		}
		if r := j + 1; r < n && c.waiting[r].readyAt < c.waiting[j].readyAt {
			j = r
		}
		if c.waiting[i].readyAt <= c.waiting[j].readyAt {
			break
		}
		c.swap(i, j)
		i = j
	}
	return i > i0
}
