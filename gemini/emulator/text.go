package emulator

import (
	"hash/fnv"
	"math/rand/v2"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// hashBytes is FNV-1a 64 of b.
func hashBytes(b []byte) uint64 {
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

// tokensOf estimates tokens as Gemini's rule of thumb does: about four
// characters a token, at least one for a non-empty text.
func tokensOf(s string) int {
	n := utf8.RuneCountInString(s)
	return (n + 3) / 4
}

// MediaTokens returns what one inline or file media part (an image) costs
// in input tokens on model at generationConfig.mediaResolution res ("" for
// the default): Gemini 3 models read images at high resolution by default,
// 1120 tokens (MEDIA_RESOLUTION_MEDIUM 560, _LOW 280); older models 258.
func MediaTokens(model, res string) int {
	if !strings.HasPrefix(model, "gemini-3") {
		return 258
	}
	switch res {
	case "MEDIA_RESOLUTION_LOW":
		return 280
	case "MEDIA_RESOLUTION_MEDIUM":
		return 560
	}
	return 1120
}

// tokenCounts counts the request's input tokens: text of every part,
// including the system instruction, at about four characters a token
// (rounded up per content), and mediaCost for each inline or file media
// part. The same count is used for TPM, usageMetadata.promptTokenCount and
// countTokens.
func (req *request) tokenCounts() (text, media int) {
	add := func(c *content) {
		chars := 0
		for _, p := range c.parts {
			if p.media {
				media += req.mediaCost
			}
			chars += utf8.RuneCountInString(p.text)
		}
		text += (chars + 3) / 4
	}
	if req.system != nil {
		add(req.system)
	}
	for i := range req.contents {
		add(&req.contents[i])
	}
	return text, media
}

func (req *request) promptTokens() int {
	t, m := req.tokenCounts()
	return t + m
}

// stopWords are left out of keywords: function words and the vocabulary of
// instructions ("return a JSON summary of the following slides").
var stopWords = names(
	"the", "and", "for", "are", "but", "not", "you", "all", "any", "can", "her", "was", "one", "our", "out",
	"his", "has", "had", "how", "its", "may", "new", "now", "old", "see", "two", "who", "did", "get", "let",
	"put", "say", "she", "too", "use", "via", "per", "with", "that", "this", "from", "they", "will", "would",
	"there", "their", "what", "about", "which", "when", "make", "like", "time", "just", "into", "than",
	"then", "them", "these", "those", "some", "could", "other", "each", "more", "most", "very", "also",
	"been", "were", "have", "your", "yours", "should", "must", "shall", "such", "only", "over", "under",
	"where", "while", "being", "both", "does", "doing", "here", "because", "between", "after", "before",
	"return", "returns", "json", "following", "please", "describe", "generate", "create", "write",
	"provide", "based", "using", "include", "includes", "including", "given", "output", "format",
	"response", "respond", "answer", "prompt", "prompts", "analyse", "analyze", "analysis", "summary",
	"summarize", "summarise", "slide", "slides", "slideshow", "image", "images", "text", "field", "fields",
	"schema", "object", "array", "string", "list", "item", "items", "exactly", "least", "within", "without",
	"task", "you're", "it's", "don't", "make", "made", "one's", "every", "many", "much", "own", "same",
	"source", "number", "wanted", "http", "https", "www", "com", "org", "net", "html",
	"through", "across", "along", "around", "against", "toward", "towards", "upon", "onto", "during",
	"until", "since", "among", "again", "still", "even", "ever", "never", "always", "often", "really",
	"quite", "rather", "yet", "already", "almost", "either", "neither", "whose", "whom", "him", "himself",
	"herself", "itself", "themselves", "ourselves", "myself", "yourself", "off", "down", "away", "back",
	"our", "ours", "mine", "theirs", "being", "having", "get", "gets", "got", "going", "goes", "went",
)

// fallbackWords stand in when a prompt has no usable words.
var fallbackWords = []string{"horizon", "journey", "light", "harbor", "garden", "morning", "pattern", "story"}

// keywords returns the prompt's content words, most frequent first (ties
// in order of first appearance), lower-case, at most 48; nil if none.
func keywords(texts []string) []string {
	count := make(map[string]int)
	first := make(map[string]int)
	var order []string
	for _, t := range texts {
		t = stripURLs(t)
		for _, w := range strings.FieldsFunc(t, func(r rune) bool {
			return !unicode.IsLetter(r) && !unicode.IsDigit(r) && r != '\'' && r != '-'
		}) {
			w = strings.ToLower(strings.Trim(w, "'-"))
			if utf8.RuneCountInString(w) < 3 || stopWords[w] || isNumber(w) {
				continue
			}
			if _, ok := count[w]; !ok {
				first[w] = len(order)
				order = append(order, w)
			}
			count[w]++
		}
	}
	sort.SliceStable(order, func(i, j int) bool { return count[order[i]] > count[order[j]] })
	if len(order) > 48 {
		order = order[:48]
	}
	return order
}

// stripURLs drops whitespace-separated fields that are URLs: their parts
// are not words of the content.
func stripURLs(t string) string {
	if !strings.Contains(t, "://") && !strings.Contains(t, "www.") {
		return t
	}
	fs := strings.Fields(t)
	out := fs[:0]
	for _, f := range fs {
		if !strings.Contains(f, "://") && !strings.HasPrefix(f, "www.") {
			out = append(out, f)
		}
	}
	return strings.Join(out, " ")
}

func isNumber(w string) bool {
	for _, r := range w {
		if !unicode.IsDigit(r) {
			return false
		}
	}
	return true
}

// writer makes prose from the prompt's keywords. Not safe for concurrent use.
type writer struct {
	r        *rand.Rand
	words    []string
	segments map[int][]string // keywords of "Slide N:" sections, by N
	focus    []string         // keywords of the section being written about, if any
	next     int              // rotates through words so consecutive phrases differ
	forms    []int            // sentence forms not used yet in the current paragraph
}

func newWriter(seed uint64, texts []string) *writer {
	w := &writer{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), words: keywords(texts)}
	if len(w.words) == 0 {
		w.words = fallbackWords
	}
	for n, sec := range sections(texts) {
		if kw := keywords([]string{sec}); len(kw) > 0 {
			if w.segments == nil {
				w.segments = make(map[int][]string)
			}
			w.segments[n] = kw
		}
	}
	return w
}

// sections splits texts at "Slide N:" markers (at the start of a line) and
// returns the text after each marker, by N.
func sections(texts []string) map[int]string {
	var out map[int]string
	for _, t := range texts {
		cur := -1
		for _, line := range strings.Split(t, "\n") {
			if n, rest, ok := slideMarker(line); ok {
				cur = n
				line = rest
				if out == nil {
					out = make(map[int]string)
				}
			}
			if cur >= 0 {
				out[cur] += line + "\n"
			}
		}
	}
	return out
}

// slideMarker parses "Slide 3: text" (also "slide 3." or "Slide 3 -").
func slideMarker(line string) (int, string, bool) {
	l := strings.TrimSpace(line)
	if len(l) < 6 || !strings.EqualFold(l[:5], "slide") {
		return 0, "", false
	}
	l = strings.TrimLeft(l[5:], " #")
	i := 0
	for i < len(l) && l[i] >= '0' && l[i] <= '9' {
		i++
	}
	if i == 0 || i > 4 {
		return 0, "", false
	}
	n := 0
	for _, c := range l[:i] {
		n = n*10 + int(c-'0')
	}
	rest := strings.TrimLeft(l[i:], " ")
	if rest != "" && !strings.ContainsRune(":.-)", rune(rest[0])) {
		return 0, "", false
	}
	if rest != "" {
		rest = rest[1:]
	}
	return n, rest, true
}

// about makes the next words come mostly from section n ("Slide n:"), when
// the prompt has one; n < 0 returns to the whole prompt.
func (w *writer) about(n int) {
	w.focus = w.segments[n]
}

// word returns the next keyword: mostly from the section in focus, else in
// frequency order with some jumps.
func (w *writer) word() string {
	if len(w.focus) > 0 && w.r.IntN(10) != 0 {
		return w.focus[w.r.IntN(len(w.focus))]
	}
	i := w.next % len(w.words)
	if w.r.IntN(4) == 0 {
		i = w.r.IntN(len(w.words))
	}
	w.next++
	return w.words[i]
}

// distinct returns n keywords, all different when the prompt has n.
func (w *writer) distinct(n int) []any {
	out := make([]any, 0, n)
	seen := make(map[string]bool, n)
	for tries := 0; len(out) < n; tries++ {
		x := w.word()
		if seen[x] && tries < 4*n {
			continue
		}
		seen[x] = true
		out = append(out, x)
	}
	return out
}

func (w *writer) pick(opts []string) string { return opts[w.r.IntN(len(opts))] }

var sentenceForms = []string{
	"The material opens with %s and connects it to %s.",
	"%s is presented alongside %s, with attention to %s.",
	"A central theme is %s, framed through %s.",
	"It highlights how %s shapes %s and %s.",
	"The narrative moves from %s toward %s.",
	"Key points include %s, %s and %s.",
	"%s and %s recur as the main motifs.",
	"Visually, %s sets the tone while %s adds contrast.",
	"The closing part returns to %s and %s.",
	"Throughout, %s gives context to %s.",
}

// sentence is one sentence built from keywords.
func (w *writer) sentence() string {
	if len(w.forms) == 0 {
		w.forms = w.r.Perm(len(sentenceForms))
	}
	form := sentenceForms[w.forms[0]]
	w.forms = w.forms[1:]
	args := w.distinct(strings.Count(form, "%s"))
	s := sprintf(form, args...)
	return upperFirst(s)
}

func (w *writer) paragraph(sentences int) string {
	w.forms = nil // each paragraph varies its sentence forms
	parts := make([]string, sentences)
	for i := range parts {
		parts[i] = w.sentence()
	}
	return strings.Join(parts, " ")
}

// title is 2-4 keywords in title case.
func (w *writer) title() string {
	n := 2 + w.r.IntN(3)
	ws := make([]string, 0, n+1)
	for i, x := range w.distinct(n) {
		ws = append(ws, titleCase(x.(string)))
		if i == n-2 && n > 2 {
			ws = append(ws, "and")
		}
	}
	return strings.Join(ws, " ")
}

var (
	imageStyles   = []string{"cinematic", "watercolor", "minimalist", "isometric", "photorealistic", "flat vector", "soft pastel", "editorial"}
	imageMedia    = []string{"illustration", "photograph", "painting", "render", "poster", "collage"}
	imageLights   = []string{"golden hour light", "soft diffused light", "dramatic side lighting", "bright studio light", "cool morning light"}
	imageFraming  = []string{"wide shot", "close-up", "centered composition", "rule-of-thirds composition", "top-down view"}
	plainOpenings = []string{"Here is an overview of", "This response covers", "In short, the input is about", "The main subject is"}
)

// imagePrompt is a prompt for an image model built from keywords.
func (w *writer) imagePrompt() string {
	ws := w.distinct(3)
	style := w.pick(imageStyles)
	return upperFirst(sprintf("%s %s %s of %s with %s, %s in the background, %s, %s",
		article(style), style, w.pick(imageMedia), ws[0].(string), ws[1].(string), ws[2].(string), w.pick(imageLights), w.pick(imageFraming)))
}

// plain is a plain-text answer.
func (w *writer) plain() string {
	ws := w.distinct(3)
	head := sprintf("%s %s, %s and %s.", w.pick(plainOpenings), ws[0].(string), ws[1].(string), ws[2].(string))
	return head + "\n\n" + w.paragraph(3+w.r.IntN(3))
}

// article is "an" before a vowel, else "a".
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiouAEIOU", rune(word[0])) {
		return "an"
	}
	return "a"
}

func upperFirst(s string) string {
	r, n := utf8.DecodeRuneInString(s)
	if n == 0 {
		return s
	}
	return string(unicode.ToUpper(r)) + s[n:]
}

func titleCase(s string) string { return upperFirst(s) }

// sprintf substitutes %s verbs only (no fmt formatting surprises from words).
func sprintf(form string, args ...any) string {
	var b strings.Builder
	i := 0
	for {
		j := strings.Index(form, "%s")
		if j < 0 || i >= len(args) {
			b.WriteString(form)
			return b.String()
		}
		b.WriteString(form[:j])
		b.WriteString(args[i].(string))
		form = form[j+2:]
		i++
	}
}

// excerpt is the first n words of the prompt, for an image answer's text.
func excerpt(texts []string, n int) string {
	var ws []string
	for _, t := range texts {
		for _, w := range strings.Fields(t) {
			if len(ws) == n {
				return strings.Join(ws, " ") + "..."
			}
			ws = append(ws, w)
		}
	}
	return strings.Join(ws, " ")
}
