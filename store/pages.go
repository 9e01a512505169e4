package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/fnv"
)

// checkPages checks the layout of a bbolt file from its bytes, with every
// offset bounds-checked: nothing here can fault or panic, whatever the
// damage. It checks what bbolt's own check (tx.Check) reads, so that the
// latter, which runs in a goroutine of its own where a fault would end the
// process, only ever sees a well-formed file: the meta pages (magic,
// version, checksum; one may be invalid, as bbolt falls back to the other),
// the high water mark against the file's size, the freelist, and every page
// reachable from the root bucket (page id, type, overflow within the file,
// elements within their page, keys in order, nested and inline buckets),
// each reachable once; every page below the high water mark is reachable
// or free. It returns the first problem found, as one line, and whether
// both meta pages are valid (bbolt's check asserts on both).
func checkPages(data []byte) (problem string, metasValid bool) {
	problem = checkPagesOf(data, &metasValid)
	return problem, metasValid
}

func checkPagesOf(data []byte, metasValid *bool) string {
	const (
		hdr        = 16
		branchFlag = 0x01
		leafFlag   = 0x02
		bucketLeaf = 0x01
		magic      = 0xED0CDAED
		version    = 2
	)
	ne := binary.NativeEndian
	if len(data) < 2*hdr+64 {
		return fmt.Sprintf("file of %d bytes: too short for a store", len(data))
	}
	pageSize := int(ne.Uint32(data[hdr+8:]))
	type meta struct {
		root, freelist, pgid, txid uint64
	}
	readMeta := func(off int) (meta, string) {
		if off+metaChecksumOff+8 > len(data) {
			return meta{}, "beyond the end of the file"
		}
		m := data[off:]
		if ne.Uint16(m[8:]) != metaFlag {
			return meta{}, fmt.Sprintf("page type %#x, want a meta page", ne.Uint16(m[8:]))
		}
		if ne.Uint32(m[hdr:]) != magic || ne.Uint32(m[hdr+4:]) != version {
			return meta{}, "not a bbolt meta page (magic or version)"
		}
		h := fnv.New64a()
		h.Write(m[hdr:metaChecksumOff])
		if h.Sum64() != ne.Uint64(m[metaChecksumOff:]) {
			return meta{}, "checksum mismatch"
		}
		return meta{root: ne.Uint64(m[hdr+16:]), freelist: ne.Uint64(m[metaFreelistOff:]),
			pgid: ne.Uint64(m[metaFreelistOff+8:]), txid: ne.Uint64(m[metaTxidOff:])}, ""
	}
	if pageSize < 512 || pageSize > 1<<20 || pageSize&(pageSize-1) != 0 {
		// Meta page 0 is damaged: find the page size from meta page 1.
		pageSize = 0
		for _, ps := range []int{4096, 8192, 16384, 65536, 1024, 2048, 512, 32768} {
			if _, bad := readMeta(ps); bad == "" {
				pageSize = ps
				break
			}
		}
		if pageSize == 0 {
			return "both meta pages are damaged"
		}
	}
	m0, bad0 := readMeta(0)
	m1, bad1 := readMeta(pageSize)
	*metasValid = bad0 == "" && bad1 == ""
	var m meta
	switch {
	case bad0 != "" && bad1 != "":
		return fmt.Sprintf("both meta pages are damaged (page 0: %s; page 1: %s)", bad0, bad1)
	case bad0 != "":
		m = m1
	case bad1 != "" || m0.txid >= m1.txid:
		m = m0
	default:
		m = m1
	}
	pages := uint64(len(data) / pageSize)
	if m.pgid < 2 || m.pgid > pages {
		return fmt.Sprintf("the file has %d whole pages of %d bytes but the store uses %d: it is truncated", pages, pageSize, m.pgid)
	}
	// page returns the bytes of page id and its overflow pages.
	page := func(id uint64) ([]byte, string) {
		if id < 2 || id >= m.pgid {
			return nil, fmt.Sprintf("page %d: out of range [2, %d)", id, m.pgid)
		}
		p := data[id*uint64(pageSize):]
		if got := ne.Uint64(p); got != id {
			return nil, fmt.Sprintf("page %d identifies itself as page %d", id, got)
		}
		over := uint64(ne.Uint32(p[12:]))
		if id+over >= m.pgid {
			return nil, fmt.Sprintf("page %d: %d overflow pages run past the end (%d)", id, over, m.pgid)
		}
		return p[:(1+over)*uint64(pageSize)], ""
	}
	used := make(map[uint64]string, m.pgid) // page -> what holds it
	mark := func(id uint64, span int, what string) string {
		for i := uint64(0); i < uint64(span/pageSize); i++ {
			if prev, ok := used[id+i]; ok {
				return fmt.Sprintf("page %d: used twice (%s and %s)", id+i, prev, what)
			}
			used[id+i] = what
		}
		return ""
	}
	free := map[uint64]bool{}
	if m.freelist != noFreelist {
		p, bad := page(m.freelist)
		if bad != "" {
			return "freelist: " + bad
		}
		if ne.Uint16(p[8:]) != freelistFlag {
			return fmt.Sprintf("freelist page %d has page type %#x", m.freelist, ne.Uint16(p[8:]))
		}
		if bad := mark(m.freelist, len(p), "the freelist"); bad != "" {
			return bad
		}
		n, ids := uint64(ne.Uint16(p[10:])), p[hdr:]
		if n == 0xFFFF {
			n, ids = ne.Uint64(ids), ids[8:]
		}
		if n > uint64(len(ids)/8) {
			return fmt.Sprintf("freelist page %d: %d free pages do not fit in it", m.freelist, n)
		}
		for i := range n {
			id := ne.Uint64(ids[i*8:])
			if id < 2 || id >= m.pgid || free[id] {
				return fmt.Sprintf("freelist: free page %d out of range or listed twice", id)
			}
			free[id] = true
		}
	}
	var walk func(p []byte, id uint64, inline bool, depth int) string
	var tree func(id uint64, depth int) string
	walk = func(p []byte, id uint64, inline bool, depth int) string {
		if depth > 64 {
			return fmt.Sprintf("page %d: the tree is more than 64 levels deep", id)
		}
		if len(p) < hdr {
			return fmt.Sprintf("page %d: inline bucket of %d bytes", id, len(p))
		}
		flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
		if flags != branchFlag && flags != leafFlag || inline && flags != leafFlag {
			return fmt.Sprintf("page %d: page type %#x, want a branch or leaf page", id, flags)
		}
		if hdr+count*16 > len(p) {
			return fmt.Sprintf("page %d: %d elements do not fit in the page", id, count)
		}
		var prev []byte
		for i := range count {
			e := hdr + i*16
			var pos, ksize, vsize uint64
			if flags == branchFlag {
				pos, ksize = uint64(ne.Uint32(p[e:])), uint64(ne.Uint32(p[e+4:]))
			} else {
				pos, ksize, vsize = uint64(ne.Uint32(p[e+4:])), uint64(ne.Uint32(p[e+8:])), uint64(ne.Uint32(p[e+12:]))
			}
			if uint64(e)+pos+ksize+vsize > uint64(len(p)) {
				return fmt.Sprintf("page %d: element %d lies outside the page", id, i)
			}
			k := p[uint64(e)+pos : uint64(e)+pos+ksize]
			if prev != nil && bytes.Compare(prev, k) >= 0 {
				return fmt.Sprintf("page %d: keys out of order at element %d", id, i)
			}
			prev = k
			if flags == branchFlag {
				child := ne.Uint64(p[e+8:])
				if bad := tree(child, depth+1); bad != "" {
					return bad
				}
				continue
			}
			if ne.Uint32(p[e:])&bucketLeaf == 0 {
				continue
			}
			v := p[uint64(e)+pos+ksize : uint64(e)+pos+ksize+vsize]
			if len(v) < 16 {
				return fmt.Sprintf("page %d: bucket %q: value of %d bytes", id, k, len(v))
			}
			root := ne.Uint64(v)
			var bad string
			if root == 0 {
				bad = walk(v[16:], id, true, depth+1)
			} else {
				bad = tree(root, depth+1)
			}
			if bad != "" {
				return bad
			}
		}
		return ""
	}
	tree = func(id uint64, depth int) string {
		p, bad := page(id)
		if bad != "" {
			return bad
		}
		if bad := mark(id, len(p), "the tree"); bad != "" {
			return bad
		}
		if free[id] {
			return fmt.Sprintf("page %d: in use and listed free", id)
		}
		return walk(p, id, false, depth)
	}
	if m.root == 0 {
		return "the root bucket has no page"
	}
	if bad := tree(m.root, 0); bad != "" {
		return bad
	}
	for id := uint64(2); id < m.pgid; id++ {
		if _, ok := used[id]; !ok && !free[id] {
			return fmt.Sprintf("page %d: neither used nor free (the file is inconsistent)", id)
		}
	}
	return ""
}
