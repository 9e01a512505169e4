package httpapi

import (
	"cmp"
	"slices"
	"strings"
)

// redacted replaces a secret in anything the handler writes or logs.
const redacted = "[REDACTED]"

// redactor removes configured secrets from text. The zero value removes
// nothing. It is safe for concurrent use (read-only after newRedactor).
type redactor struct {
	plain *strings.Replacer // in text
	json  *strings.Replacer // in JSON-encoded text (secrets as marshalJSON escapes them)
}

func newRedactor(secrets []string) redactor {
	uniq := make([]string, 0, len(secrets))
	for _, s := range secrets {
		if s != "" && !slices.Contains(uniq, s) {
			uniq = append(uniq, s)
		}
	}
	if len(uniq) == 0 {
		return redactor{}
	}
	// Longest first, so a secret containing another is replaced whole.
	slices.SortFunc(uniq, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	var plain, js []string
	for _, s := range uniq {
		plain = append(plain, s, redacted)
		b, _ := marshalJSON(s) // a string always marshals: "...."\n
		esc := string(b[1 : len(b)-2])
		js = append(js, esc, redacted)
	}
	return redactor{plain: strings.NewReplacer(plain...), json: strings.NewReplacer(js...)}
}

// String returns s without the secrets.
func (r redactor) String(s string) string {
	if r.plain == nil {
		return s
	}
	return r.plain.Replace(s)
}

// JSON returns the JSON text b without the secrets; the result is still
// valid JSON.
func (r redactor) JSON(b []byte) []byte {
	if r.json == nil {
		return b
	}
	return []byte(r.json.Replace(string(b)))
}
