// Package redact removes secrets from text that slideshowd writes: errors,
// log lines and HTTP answers. One Redactor removes, in this order, every
// configured secret, anything shaped like a Google API key ("AIza" and 35
// more characters of [A-Za-z0-9_-]) and the user information (user name and
// password) of every URL ("http://user:pass@host" becomes
// "http://[REDACTED]@host"). Config and flag errors, the HTTP API and the
// pipeline's log lines all quote client or operator values through it.
package redact

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"unicode/utf8"
)

// Mark replaces a secret.
const Mark = "[REDACTED]"

var (
	// apiKey is the shape of a Google API key.
	apiKey = regexp.MustCompile(`AIza[0-9A-Za-z_\-]{35}`)
	// userinfo is a URL's scheme and user information, up to the '@'.
	userinfo = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#@\s"'<>\\]*@`)
)

// Redactor removes configured secrets, API-key-shaped strings and URL user
// information from text. The zero value removes the last two only. It is
// safe for concurrent use (read-only after New).
type Redactor struct {
	plain *strings.Replacer // in text
	json  *strings.Replacer // in JSON-encoded text (secrets as encoding/json escapes them)
}

// MinSecret is the shortest secret New takes: shorter strings hide nothing
// (any key is far longer) and would cut letters out of every message.
const MinSecret = 3

// New returns a Redactor of secrets; strings shorter than MinSecret bytes
// are ignored.
func New(secrets ...string) Redactor {
	uniq := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if len(s) >= MinSecret && !slices.Contains(uniq, s) {
			uniq = append(uniq, s)
		}
	}
	if len(uniq) == 0 {
		return Redactor{}
	}
	// Longest first, so a secret containing another is replaced whole.
	slices.SortFunc(uniq, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	var plain, js []string
	for _, s := range uniq {
		plain = append(plain, s, Mark)
		// As encoding/json writes it, with and without HTML escaping.
		var buf bytes.Buffer
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(false)
		_ = enc.Encode(s) // a string always encodes: "...."\n
		b := buf.Bytes()
		js = append(js, string(b[1:len(b)-2]), Mark)
		if h, _ := json.Marshal(s); string(h) != string(b[:len(b)-1]) {
			js = append(js, string(h[1:len(h)-1]), Mark)
		}
	}
	return Redactor{plain: strings.NewReplacer(plain...), json: strings.NewReplacer(js...)}
}

// String returns s without secrets.
func (r Redactor) String(s string) string {
	if r.plain != nil {
		s = r.plain.Replace(s)
	}
	return shapes(s)
}

// JSON returns the JSON text b without secrets; the result is still valid
// JSON (the marks hold no character JSON escapes).
func (r Redactor) JSON(b []byte) []byte {
	s := string(b)
	if r.json != nil {
		s = r.json.Replace(s)
	}
	return []byte(shapes(s))
}

// Excerpt returns at most max bytes of s (cut at a character boundary, with
// "..." when cut) without secrets. Redaction comes before the cut, so a
// secret is never left half-shown.
func (r Redactor) Excerpt(s string, max int) string {
	// Redact a bounded prefix: a secret starting before max ends well
	// within it.
	const slack = 1024
	if len(s) > max+slack {
		s = s[:max+slack]
	}
	s = r.String(s)
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// String removes API-key-shaped strings and URL user information from s.
func String(s string) string { return Redactor{}.String(s) }

func shapes(s string) string {
	if strings.Contains(s, "AIza") {
		s = apiKey.ReplaceAllLiteralString(s, Mark)
	}
	if strings.Contains(s, "@") && strings.Contains(s, "://") {
		s = userinfo.ReplaceAllString(s, "${1}"+Mark+"@")
	}
	return s
}

// URL returns raw, a URL from the configuration or the command line, as
// errors, logs and reports may show it, hiding whatever may be a secret
// however the URL was mistyped:
//   - everything between its scheme ("http://", or "redis:" when the
//     slashes are mistyped) and its last '@' is replaced by Mark: a mistyped
//     URL ("redis:/:PASSWORD@host", "http:PASSWORD@host") puts the password
//     in the path or the opaque part, where net/url's user information rules
//     miss it;
//   - without '@', a value with no scheme at all ("PASSWORD", the secret
//     pasted alone), or whose scheme is not followed by "//", is not shown
//     past its scheme;
//   - the value of every query parameter for which keep returns false
//     ("?key=AIza...", "?password=..."), and a fragment, are replaced by
//     Mark; keep may be nil (no value shown). keep names settings whose
//     values are safe to show (a Redis URL's db, dial_timeout, ...).
//
// The rest goes through String's shapes (API keys). It is the one URL
// redaction of the process: every URL from the configuration (base_url,
// redis_url) and every daemon address a command prints goes through it.
func URL(raw string, keep func(param string) bool) string {
	at := strings.LastIndexByte(raw, '@')
	m := urlScheme.FindStringIndex(raw)
	end := 0
	if m != nil {
		end = m[1]
	}
	var out string
	switch {
	case at >= 0:
		out = String(raw[:end]) + Mark + raw[at:]
	case m == nil || !strings.HasSuffix(raw[:end], "//"):
		return String(raw[:end]) + Mark
	default:
		out = String(raw)
	}
	return shownQuery(out, keep)
}

// shownQuery replaces in s the value of every query parameter keep does not
// keep, and the fragment, by Mark.
func shownQuery(s string, keep func(string) bool) string {
	q := strings.IndexByte(s, '?')
	if q < 0 {
		if h := strings.IndexByte(s, '#'); h >= 0 {
			return s[:h+1] + Mark
		}
		return s
	}
	rest, frag := s[q+1:], ""
	if h := strings.IndexByte(rest, '#'); h >= 0 {
		rest, frag = rest[:h], "#"+Mark
	}
	params := strings.Split(rest, "&")
	for i, p := range params {
		k, _, ok := strings.Cut(p, "=")
		if ok && (keep == nil || !keep(k)) {
			params[i] = k + "=" + Mark
		}
	}
	return s[:q+1] + strings.Join(params, "&") + frag
}

// urlScheme matches a URL's scheme and the slashes after it, at the start.
var urlScheme = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*:/{0,2}`)

// CredentialParam returns the first (by name) query parameter that may
// carry a credential: a name such as key, api_key, token, password,
// secret or signature, or a value shaped like an API key (String); ""
// when none. The configuration's base_url checks (internal/config and
// package gemini) refuse a URL with one.
func CredentialParam(q url.Values) string {
	names := make([]string, 0, len(q))
	for k := range q {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		n := strings.ToLower(k)
		for _, w := range []string{"key", "token", "secret", "pass", "pwd", "auth", "sig", "cred"} {
			if strings.Contains(n, w) {
				return k
			}
		}
		for _, v := range q[k] {
			if String(v) != v {
				return k
			}
		}
	}
	return ""
}

// ParseError returns a fixed text for err, an error of url.Parse (or
// url.ParseRequestURI), that says what kind of mistake the URL holds
// without quoting any of it: net/url's own texts quote the input ("invalid
// port \":PASSWORD\" after host", a bad escape, a host's character) and
// the *url.Error holds the whole URL, so neither may be shown.
func ParseError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var ee url.EscapeError
	var he url.InvalidHostError
	switch {
	case err == nil:
		return "malformed URL"
	case errors.As(err, &ee):
		return "invalid URL escape (a '%' not followed by two hexadecimal digits, or an escape not allowed where it is)"
	case errors.As(err, &he):
		return "invalid character in the host"
	}
	msg := err.Error()
	for _, k := range []struct{ prefix, text string }{
		{"invalid port", "invalid port after the host (want a number after ':')"},
		{"missing protocol scheme", "missing protocol scheme"},
		{"first path segment in URL cannot contain colon", "no scheme, and a ':' in the first path segment"},
		{"net/url: invalid control character", "invalid control character in the URL"},
		{"net/url: invalid userinfo", "invalid user information (before '@')"},
		{"invalid IP-literal", "invalid IP literal in the host ('[...]')"},
		{"invalid host", "invalid IP literal in the host ('[...]')"},
		{"missing ']' in host", "missing ']' in the host"},
		{"empty url", "empty"},
		{"invalid URI for request", "not an absolute URL or path"},
	} {
		if strings.HasPrefix(msg, k.prefix) {
			return k.text
		}
	}
	return "malformed URL"
}

// URLErrors returns s, the text of err or of an error wrapping it, with the
// URL of every *url.Error in err's chain (an HTTP client's "Post
// \"URL\": dial tcp ...") shown as URL shows it, then through String's
// shapes: the same rule as a configured URL printed by check.
func URLErrors(s string, err error) string {
	for e := err; e != nil; {
		if ue, ok := e.(*url.Error); ok && ue.URL != "" {
			s = strings.ReplaceAll(s, ue.URL, URL(ue.URL, nil))
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			e = u.Unwrap()
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				s = URLErrors(s, c)
			}
			e = nil
		default:
			e = nil
		}
	}
	return String(s)
}
