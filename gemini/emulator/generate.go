package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxStringLength bounds minLength so a schema cannot make the emulator
// build an enormous string.
const maxStringLength = 100000

// maxGenDepth bounds recursion through $ref cycles: deeper, optional
// properties are left out and arrays get their minimum.
const maxGenDepth = 24

// jsonGen writes a JSON value that follows a schema, with strings made from
// the prompt's keywords. Not safe for concurrent use.
type jsonGen struct {
	w    *writer
	defs map[string]*schema
	buf  bytes.Buffer
}

// generateJSON returns indented JSON that follows s.
func generateJSON(w *writer, s *schema) string {
	g := &jsonGen{w: w, defs: s.defs}
	g.value(s, "", -1, 0)
	var out bytes.Buffer
	if err := json.Indent(&out, g.buf.Bytes(), "", "  "); err != nil {
		return g.buf.String() // cannot happen: value writes valid JSON
	}
	return out.String()
}

func (g *jsonGen) resolve(s *schema) *schema {
	for i := 0; s.ref != "" && i < 16; i++ {
		d, ok := g.defs[s.ref]
		if !ok {
			break
		}
		s = d
	}
	return s
}

// value writes one value of s. name is the property (or the array's
// property) it fills, idx its index in an array or -1.
func (g *jsonGen) value(s *schema, name string, idx, depth int) {
	s = g.resolve(s)
	if s.hasConst {
		g.raw(s.constVal)
		return
	}
	if len(s.enum) > 0 {
		g.raw(s.enum[g.w.r.IntN(len(s.enum))])
		return
	}
	if len(s.anyOf) > 0 && s.typ == "" && len(s.props) == 0 {
		g.value(g.anyOfChoice(s), name, idx, depth+1)
		return
	}
	switch typ := s.inferType(); typ {
	case "object":
		g.object(s, idx, depth)
	case "array":
		g.array(s, name, depth)
	case "integer":
		g.buf.WriteString(strconv.FormatInt(g.integer(s, name, idx), 10))
	case "number":
		g.buf.WriteString(strconv.FormatFloat(g.number(s, name), 'f', -1, 64))
	case "boolean":
		g.buf.WriteString(strconv.FormatBool(g.w.r.IntN(2) == 0))
	case "null":
		g.buf.WriteString("null")
	default:
		g.str(g.stringFor(s, name, idx))
	}
}

func (s *schema) inferType() string {
	switch {
	case s.typ != "":
		return s.typ
	case len(s.props) > 0:
		return "object"
	case s.items != nil || len(s.prefixItems) > 0:
		return "array"
	}
	return "string"
}

// object writes an object of s; idx is the index of the array element it
// is, or -1, so that properties like "index" can number the elements.
func (g *jsonGen) object(s *schema, idx, depth int) {
	if idx >= 0 {
		// Element i of an array is about "Slide i+1" when the prompt has one.
		prev := g.w.focus
		g.w.about(idx + 1)
		defer func() { g.w.focus = prev }()
	}
	g.buf.WriteByte('{')
	n := 0
	for _, p := range s.props {
		if depth > maxGenDepth && !s.required[p.name] {
			continue
		}
		if n > 0 {
			g.buf.WriteByte(',')
		}
		g.str(p.name)
		g.buf.WriteByte(':')
		g.value(p.s, p.name, idx, depth+1)
		n++
	}
	g.buf.WriteByte('}')
}

// arrayCount returns how many items an array of s gets at depth: usually
// the likely count, or one more when extra (drawn 1 in 3) and allowed.
func arrayCount(s *schema, depth int, extra bool) int {
	lo, hi := s.minItems, s.maxItems
	if lo < 0 {
		lo = 0
	}
	if s.minItems < 0 && s.maxItems < 0 && len(s.prefixItems) > 0 {
		return len(s.prefixItems)
	}
	if hi < 0 {
		hi = max(lo, 3) + 1
	}
	switch {
	case depth > maxGenDepth, lo == hi:
		return lo
	}
	// Mostly three items, within the bounds; at least one if allowed.
	n := min(max(3, lo), hi)
	if n == 0 && hi > 0 {
		n = 1
	}
	if extra && hi > n {
		n++
	}
	return n
}

func (g *jsonGen) array(s *schema, name string, depth int) {
	n := arrayCount(s, depth, g.w.r.IntN(3) == 0)
	g.buf.WriteByte('[')
	elem := singular(name)
	for i := 0; i < n; i++ {
		if i > 0 {
			g.buf.WriteByte(',')
		}
		it := s.items
		if i < len(s.prefixItems) {
			it = s.prefixItems[i]
		}
		if it == nil {
			it = &schema{typ: "string", minItems: -1, maxItems: -1, minLength: -1, maxLength: -1}
		}
		g.value(it, elem, i, depth+1)
	}
	g.buf.WriteByte(']')
}

// Limits on what a schema may ask for. The real API refuses schemas that
// are too complex with msgTooManyStates; the emulator does so when an
// answer would exceed maxAnswerValues values or nest deeper than
// maxSchemaDepth through $ref.
const (
	maxAnswerValues  = 200000
	maxEstimateSteps = 100000
	msgTooManyStates = "The specified schema produces a constraint that has too many states for serving. Typical causes of this error are schemas with lots of text (for example, very long property or enum names), schemas with long array length limits (especially when nested), or schemas using complex value matchers (for example, integers or numbers with minimum/maximum bounds or strings with complex formats like date-time)"
)

// tooComplex reports whether an answer for s could exceed the limits.
func tooComplex(s *schema) bool {
	g := &jsonGen{defs: s.defs}
	steps := 0
	return g.estimate(s, 0, &steps) > maxAnswerValues
}

// estimate bounds the number of values value(s, ..., depth) writes; it
// follows value's choices and is +Inf past the limits.
func (g *jsonGen) estimate(s *schema, depth int, steps *int) float64 {
	*steps++
	if *steps > maxEstimateSteps || depth > maxSchemaDepth {
		return math.Inf(1)
	}
	s = g.resolve(s)
	if s.hasConst || len(s.enum) > 0 {
		return 1
	}
	if len(s.anyOf) > 0 && s.typ == "" && len(s.props) == 0 {
		return g.estimate(g.anyOfChoice(s), depth+1, steps)
	}
	switch s.inferType() {
	case "object":
		n := 1.0
		for _, p := range s.props {
			if depth > maxGenDepth && !s.required[p.name] {
				continue
			}
			n += g.estimate(p.s, depth+1, steps)
		}
		return n
	case "array":
		count := arrayCount(s, depth, true)
		n := 1.0
		for i := 0; i < count && i < len(s.prefixItems); i++ {
			n += g.estimate(s.prefixItems[i], depth+1, steps)
		}
		if rest := count - len(s.prefixItems); rest > 0 && s.items != nil {
			n += float64(rest) * g.estimate(s.items, depth+1, steps)
		} else if rest > 0 {
			n += float64(rest)
		}
		return n
	case "string":
		return 1 + float64(max(0, s.minLength))/8 // long strings cost like many values
	}
	return 1
}

// anyOfChoice is the option value uses: the first that is not null.
func (g *jsonGen) anyOfChoice(s *schema) *schema {
	for _, a := range s.anyOf {
		if g.resolve(a).typ != "null" {
			return a
		}
	}
	return s.anyOf[0]
}

// singular makes an array's property name name one element: "prompts" -> "prompt".
func singular(name string) string {
	switch {
	case strings.HasSuffix(name, "ies") && len(name) > 3:
		return name[:len(name)-3] + "y"
	case strings.HasSuffix(name, "ss"):
		return name
	case strings.HasSuffix(name, "s") && len(name) > 1:
		return name[:len(name)-1]
	}
	return name
}

func (g *jsonGen) raw(v any) {
	b, err := marshalNoEscape(v)
	if err != nil {
		b = []byte("null")
	}
	g.buf.Write(b)
}

func (g *jsonGen) str(s string) {
	b, _ := marshalNoEscape(s)
	g.buf.Write(b)
}

// marshalNoEscape is json.Marshal without HTML escaping, as the real API writes.
func marshalNoEscape(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}

// words splits a property name into lower-case words: "imagePrompt",
// "image_prompt" -> ["image", "prompt"].
func nameWords(name string) []string {
	var ws []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			ws = append(ws, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for _, r := range name {
		switch {
		case !unicode.IsLetter(r) && !unicode.IsDigit(r):
			flush()
		case unicode.IsUpper(r):
			flush()
			cur = append(cur, r)
		default:
			cur = append(cur, r)
		}
	}
	flush()
	return ws
}

func hasWord(ws []string, opts ...string) bool {
	for _, w := range ws {
		for _, o := range opts {
			if w == o {
				return true
			}
		}
	}
	return false
}

// stringFor makes a string for a property from its name, format and bounds.
func (g *jsonGen) stringFor(s *schema, name string, idx int) string {
	ws := nameWords(name)
	w := g.w
	var v string
	switch {
	case s.format == "date-time":
		v = "2026-01-15T09:30:00Z"
	case s.format == "date" || hasWord(ws, "date"):
		v = "2026-01-15"
	case s.format == "time":
		v = "09:30:00"
	case s.format == "email" || hasWord(ws, "email"):
		v = "info@example.com"
	case s.format == "uri" || s.format == "url" || hasWord(ws, "url", "uri", "link", "href"):
		v = "https://example.com/" + slug(w.word(), w.word())
	case s.format == "uuid":
		v = fmt.Sprintf("%08x-%04x-4%03x-8%03x-%012x", w.r.Uint32(), w.r.IntN(1<<16), w.r.IntN(1<<12), w.r.IntN(1<<12), w.r.Uint64()&(1<<48-1))
	case hasWord(ws, "id", "slug", "key"):
		v = slug(w.word(), w.word())
		if idx >= 0 {
			v += "-" + strconv.Itoa(idx+1)
		}
	case hasWord(ws, "language", "lang", "locale"):
		v = "en"
	case hasWord(ws, "color", "colour"):
		v = fmt.Sprintf("#%06x", w.r.IntN(1<<24))
	case hasWord(ws, "prompt"):
		v = w.imagePrompt()
	case hasWord(ws, "title", "headline", "heading", "name", "label", "caption"):
		v = w.title()
	case hasWord(ws, "keyword", "tag", "topic", "theme", "subject", "word", "entity", "category"):
		v = w.word()
	case hasWord(ws, "summary", "description", "overview", "abstract", "analysis", "explanation", "narrative",
		"text", "body", "content", "notes", "note", "reason", "rationale", "details", "comment", "message", "story"):
		v = w.paragraph(2 + w.r.IntN(2))
	case hasWord(ws, "sentiment", "tone", "mood"):
		v = w.pick([]string{"positive", "neutral", "reflective", "optimistic"})
	default:
		v = upperFirst(sprintf("%s %s %s", w.word(), w.pick([]string{"and", "with", "beyond", "for"}), w.word()))
	}
	if n := utf8.RuneCountInString(v); n < s.minLength {
		var b strings.Builder
		b.WriteString(v)
		for n < s.minLength {
			x := w.word()
			b.WriteByte(' ')
			b.WriteString(x)
			n += 1 + utf8.RuneCountInString(x)
		}
		v = b.String()
	}
	if s.maxLength >= 0 && utf8.RuneCountInString(v) > s.maxLength {
		v = string([]rune(v)[:s.maxLength]) // still >= minLength: Validate checks min <= max
	}
	return v
}

func slug(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if b.Len() > 0 {
			b.WriteByte('-')
		}
		for _, r := range strings.ToLower(p) {
			if r < 128 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// bounds returns the inclusive range for a number of s, with def when s has none.
func (s *schema) bounds(defLo, defHi float64) (lo, hi float64) {
	lo, hi = defLo, defHi
	if s.minimum != nil {
		lo = *s.minimum
		if s.maximum == nil && hi < lo {
			hi = lo + (defHi - defLo)
		}
	}
	if s.maximum != nil {
		hi = *s.maximum
		if s.minimum == nil && lo > hi {
			lo = hi - (defHi - defLo)
		}
	}
	return lo, hi
}

func (g *jsonGen) integer(s *schema, name string, idx int) int64 {
	ws := nameWords(name)
	defLo, defHi := 1.0, 100.0
	switch {
	case hasWord(ws, "index", "position", "order", "rank", "number", "slide", "page", "step") && idx >= 0:
		defLo, defHi = float64(idx+1), float64(idx+1)
	case hasWord(ws, "year"):
		defLo, defHi = 2026, 2026
	case hasWord(ws, "score", "rating"):
		defLo, defHi = 1, 10
	case hasWord(ws, "count", "total"):
		defLo, defHi = 1, 12
	case hasWord(ws, "seconds", "duration"):
		defLo, defHi = 5, 60
	case hasWord(ws, "percent", "percentage"):
		defLo, defHi = 0, 100
	}
	lo, hi := s.bounds(defLo, defHi)
	l, h := int64(math.Ceil(lo)), int64(math.Floor(hi))
	if s.exclMin && float64(l) == lo {
		l++
	}
	if s.exclMax && float64(h) == hi {
		h--
	}
	if h < l {
		return l
	}
	if h-l > 1<<40 {
		h = l + 1<<40
	}
	return l + g.w.r.Int64N(h-l+1)
}

func (g *jsonGen) number(s *schema, name string) float64 {
	defLo, defHi := 0.0, 100.0
	if hasWord(nameWords(name), "score", "confidence", "probability", "weight", "ratio", "share") {
		defLo, defHi = 0, 1
	}
	lo, hi := s.bounds(defLo, defHi)
	if hi < lo {
		return lo
	}
	x := lo + g.w.r.Float64()*(hi-lo)
	x = math.Round(x*100) / 100
	// Rounding must not step outside the bounds.
	if x < lo || (s.exclMin && x <= lo) {
		x = lo + (hi-lo)/2
	}
	if x > hi || (s.exclMax && x >= hi) {
		x = lo + (hi-lo)/2
	}
	return x
}
