package pipeline

import (
	"bytes"
	"encoding/json"
	"strings"
)

// MemberError is a problem with one member of a JSON object read by
// JSONObjectMembers: an unknown or duplicate name, or a value that does not
// decode. Name is the member's name as written, "" for the object as a
// whole; callers prefix it with where the object is ("slides[2].text",
// "batch.json: [0].images").
type MemberError struct {
	Name   string
	Reason string
}

func (e *MemberError) Error() string {
	if e.Name == "" {
		return e.Reason
	}
	return e.Name + ": " + e.Reason
}

// JSONObjectMembers reads the JSON object raw (one valid JSON object; the
// caller checks its kind) into its members by name, as strictly as the
// decoders of requests (the HTTP API, batch files) need: names are matched
// exactly (case-sensitive) against allowed, an unknown name is an error
// ("unknown field (want a, b)"), and so is a name written twice ("duplicate
// field"), where encoding/json would keep the last silently; a member whose
// value is null is left out, as if absent. Errors are *MemberError, the
// first in the order written. Safe for concurrent use.
func JSONObjectMembers(raw json.RawMessage, allowed ...string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // '{'
		return nil, &MemberError{Reason: err.Error()}
	}
	members := make(map[string]json.RawMessage, len(allowed))
	seen := make(map[string]bool, len(allowed))
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, &MemberError{Reason: err.Error()}
		}
		name, _ := tok.(string)
		known := false
		for _, a := range allowed {
			known = known || a == name
		}
		if !known {
			return nil, &MemberError{Name: name, Reason: "unknown field (want " + strings.Join(allowed, ", ") + ")"}
		}
		if seen[name] {
			return nil, &MemberError{Name: name, Reason: "duplicate field"}
		}
		seen[name] = true
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, &MemberError{Name: name, Reason: err.Error()}
		}
		if t := bytes.TrimLeft(v, " \t\r\n"); len(t) > 0 && t[0] != 'n' {
			members[name] = v
		}
	}
	return members, nil
}
