package emulator

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// schema is a response schema in one shape for both flavours the API takes:
// responseSchema (the OpenAPI subset of genai.Schema, upper-case types) and
// responseJsonSchema (JSON Schema).
type schema struct {
	typ      string // "object", "array", "string", "integer", "number", "boolean", "null" or "" (infer)
	nullable bool

	props    []prop // in output order
	required map[string]bool

	items       *schema
	prefixItems []*schema
	minItems    int // -1 = unset
	maxItems    int // -1 = unset

	enum     []any
	constVal any
	hasConst bool

	minLength, maxLength int // -1 = unset
	minimum, maximum     *float64
	exclMin, exclMax     bool
	format               string
	description          string

	anyOf []*schema
	ref   string
	defs  map[string]*schema // $defs / definitions, on the root only
}

type prop struct {
	name string
	s    *schema
}

const maxSchemaDepth = 64

// parseSchema normalizes a schema. jsonSchema selects the JSON Schema
// flavour (property order kept as sent); otherwise the OpenAPI subset
// (properties in propertyOrdering, else alphabetical, as Gemini does).
func parseSchema(raw json.RawMessage, jsonSchema bool) (*schema, error) {
	return parseNode(raw, "", jsonSchema, 0)
}

type schemaError struct{ path, msg string }

func (e *schemaError) Error() string { return e.path + ": " + e.msg }

func serr(path, format string, args ...any) error {
	return &schemaError{path: path, msg: fmt.Sprintf(format, args...)}
}

// orderedObject decodes a JSON object keeping its member order.
func orderedObject(raw json.RawMessage) ([]string, map[string]json.RawMessage, bool) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	t, err := dec.Token()
	if err != nil || t != json.Delim('{') {
		return nil, nil, false
	}
	var keys []string
	vals := make(map[string]json.RawMessage)
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, nil, false
		}
		k, ok := t.(string)
		if !ok {
			return nil, nil, false
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, nil, false
		}
		if _, dup := vals[k]; !dup {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	return keys, vals, true
}

func parseNode(raw json.RawMessage, path string, jsonSchema bool, depth int) (*schema, error) {
	if depth > maxSchemaDepth {
		return nil, serr(path, "schema nesting exceeds %d levels", maxSchemaDepth)
	}
	s := &schema{minItems: -1, maxItems: -1, minLength: -1, maxLength: -1}
	if t := bytes.TrimSpace(raw); string(t) == "true" || string(t) == "{}" {
		return s, nil // JSON Schema "anything"
	}
	keys, m, ok := orderedObject(raw)
	if !ok {
		return nil, serr(path, "invalid schema %s", compactRaw(raw))
	}
	norm := make(map[string]json.RawMessage, len(m))
	for _, k := range keys {
		norm[snakeToCamel(k)] = m[k]
	}
	m = norm

	if v, ok := m["type"]; ok && !isNull(v) {
		if err := s.parseType(v, path+".type", jsonSchema); err != nil {
			return nil, err
		}
	}
	if v, ok := m["nullable"]; ok && !isNull(v) {
		if json.Unmarshal(v, &s.nullable) != nil {
			return nil, serr(path+".nullable", "invalid value %s", compactRaw(v))
		}
	}
	if v, ok := m["description"]; ok {
		_ = json.Unmarshal(v, &s.description)
	}
	if v, ok := m["format"]; ok {
		_ = json.Unmarshal(v, &s.format)
	}
	if v, ok := m["properties"]; ok && !isNull(v) {
		pkeys, pm, ok := orderedObject(v)
		if !ok {
			return nil, serr(path+".properties", "invalid value %s", compactRaw(v))
		}
		if !jsonSchema {
			sort.Strings(pkeys)
		}
		for _, k := range pkeys {
			ps, err := parseNode(pm[k], path+".properties["+strconv.Quote(k)+"]", jsonSchema, depth+1)
			if err != nil {
				return nil, err
			}
			s.props = append(s.props, prop{name: k, s: ps})
		}
	}
	if v, ok := m["propertyOrdering"]; ok && !isNull(v) {
		var order []string
		if json.Unmarshal(v, &order) != nil {
			return nil, serr(path+".property_ordering", "invalid value %s", compactRaw(v))
		}
		s.props = reorder(s.props, order)
	}
	if v, ok := m["required"]; ok && !isNull(v) {
		var req []string
		if json.Unmarshal(v, &req) != nil {
			return nil, serr(path+".required", "invalid value %s", compactRaw(v))
		}
		s.required = make(map[string]bool, len(req))
		for _, r := range req {
			found := false
			for _, p := range s.props {
				found = found || p.name == r
			}
			if !found && !jsonSchema {
				return nil, serr(path+".required", "property %q is required but not defined in properties", r)
			}
			s.required[r] = true
		}
	}
	if v, ok := m["items"]; ok && !isNull(v) {
		if strings.HasPrefix(string(bytes.TrimSpace(v)), "[") { // draft-04 tuple form
			var l []json.RawMessage
			if json.Unmarshal(v, &l) != nil {
				return nil, serr(path+".items", "invalid value %s", compactRaw(v))
			}
			for i, it := range l {
				is, err := parseNode(it, fmt.Sprintf("%s.items[%d]", path, i), jsonSchema, depth+1)
				if err != nil {
					return nil, err
				}
				s.prefixItems = append(s.prefixItems, is)
			}
		} else {
			is, err := parseNode(v, path+".items", jsonSchema, depth+1)
			if err != nil {
				return nil, err
			}
			s.items = is
		}
	}
	if v, ok := m["prefixItems"]; ok && !isNull(v) {
		var l []json.RawMessage
		if json.Unmarshal(v, &l) != nil {
			return nil, serr(path+".prefix_items", "invalid value %s", compactRaw(v))
		}
		for i, it := range l {
			is, err := parseNode(it, fmt.Sprintf("%s.prefix_items[%d]", path, i), jsonSchema, depth+1)
			if err != nil {
				return nil, err
			}
			s.prefixItems = append(s.prefixItems, is)
		}
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"minItems", &s.minItems}, {"maxItems", &s.maxItems}, {"minLength", &s.minLength}, {"maxLength", &s.maxLength}} {
		if v, ok := m[f.name]; ok && !isNull(v) {
			n, ok := parseInt(v)
			if !ok || n < 0 {
				return nil, serr(path+"."+camelToSnake(f.name), "invalid value %s", compactRaw(v))
			}
			*f.dst = n
		}
	}
	if s.minItems >= 0 && s.maxItems >= 0 && s.minItems > s.maxItems {
		return nil, serr(path, "min_items (%d) is greater than max_items (%d)", s.minItems, s.maxItems)
	}
	if s.minLength >= 0 && s.maxLength >= 0 && s.minLength > s.maxLength {
		return nil, serr(path, "min_length (%d) is greater than max_length (%d)", s.minLength, s.maxLength)
	}
	if s.minLength > maxStringLength {
		return nil, serr(path+".min_length", "%d exceeds the emulator's limit of %d characters", s.minLength, maxStringLength)
	}
	for _, f := range []struct {
		name string
		dst  **float64
		excl *bool
	}{
		{"minimum", &s.minimum, nil}, {"maximum", &s.maximum, nil},
		{"exclusiveMinimum", &s.minimum, &s.exclMin}, {"exclusiveMaximum", &s.maximum, &s.exclMax},
	} {
		v, ok := m[f.name]
		if !ok || isNull(v) {
			continue
		}
		var x float64
		if json.Unmarshal(v, &x) != nil {
			var b bool // draft-04: exclusiveMinimum is a boolean modifier
			if f.excl != nil && json.Unmarshal(v, &b) == nil {
				*f.excl = b
				continue
			}
			var str string
			if json.Unmarshal(v, &str) != nil {
				return nil, serr(path+"."+camelToSnake(f.name), "invalid value %s", compactRaw(v))
			}
			var err error
			if x, err = strconv.ParseFloat(str, 64); err != nil {
				return nil, serr(path+"."+camelToSnake(f.name), "invalid value %s", compactRaw(v))
			}
		}
		*f.dst = &x
		if f.excl != nil {
			*f.excl = true
		}
	}
	if s.minimum != nil && s.maximum != nil && *s.minimum > *s.maximum {
		return nil, serr(path, "minimum (%v) is greater than maximum (%v)", *s.minimum, *s.maximum)
	}
	if v, ok := m["enum"]; ok && !isNull(v) {
		if json.Unmarshal(v, &s.enum) != nil {
			return nil, serr(path+".enum", "invalid value %s", compactRaw(v))
		}
		if !jsonSchema {
			for _, e := range s.enum {
				if _, ok := e.(string); !ok {
					return nil, serr(path+".enum", "enum values must be strings, got %v", e)
				}
			}
		}
	}
	if v, ok := m["const"]; ok {
		if json.Unmarshal(v, &s.constVal) == nil {
			s.hasConst = true
		}
	}
	for _, k := range []string{"anyOf", "oneOf", "allOf"} {
		v, ok := m[k]
		if !ok || isNull(v) {
			continue
		}
		var l []json.RawMessage
		if json.Unmarshal(v, &l) != nil {
			return nil, serr(path+"."+camelToSnake(k), "invalid value %s", compactRaw(v))
		}
		for i, it := range l {
			as, err := parseNode(it, fmt.Sprintf("%s.%s[%d]", path, camelToSnake(k), i), jsonSchema, depth+1)
			if err != nil {
				return nil, err
			}
			s.anyOf = append(s.anyOf, as)
		}
	}
	if v, ok := m["$ref"]; ok {
		_ = json.Unmarshal(v, &s.ref)
	}
	for _, k := range []string{"$defs", "definitions"} {
		v, ok := m[k]
		if !ok || isNull(v) {
			continue
		}
		dkeys, dm, ok := orderedObject(v)
		if !ok {
			return nil, serr(path+"."+k, "invalid value %s", compactRaw(v))
		}
		if s.defs == nil {
			s.defs = make(map[string]*schema)
		}
		for _, dk := range dkeys {
			ds, err := parseNode(dm[dk], path+"."+k+"["+strconv.Quote(dk)+"]", jsonSchema, depth+1)
			if err != nil {
				return nil, err
			}
			s.defs["#/"+k+"/"+dk] = ds
		}
	}
	return s, nil
}

func (s *schema) parseType(v json.RawMessage, path string, jsonSchema bool) error {
	valid := func(t string) (string, bool) {
		switch t = strings.ToLower(t); t {
		case "string", "number", "integer", "boolean", "array", "object", "null":
			return t, true
		case "type_unspecified":
			return "", !jsonSchema
		}
		return "", false
	}
	var one string
	if json.Unmarshal(v, &one) == nil {
		t, ok := valid(one)
		if !ok {
			return serr(path, "invalid value %s", compactRaw(v))
		}
		if t == "null" {
			s.nullable = true
		}
		s.typ = t
		return nil
	}
	var many []string
	if !jsonSchema || json.Unmarshal(v, &many) != nil {
		return serr(path, "invalid value %s", compactRaw(v))
	}
	for _, m := range many {
		t, ok := valid(m)
		if !ok {
			return serr(path, "invalid value %s", compactRaw(v))
		}
		if t == "null" {
			s.nullable = true
		} else if s.typ == "" {
			s.typ = t
		}
	}
	if s.typ == "" && s.nullable {
		s.typ = "null"
	}
	return nil
}

// reorder puts the properties named in order first, in that order, and the
// rest after them as they were.
func reorder(props []prop, order []string) []prop {
	out := make([]prop, 0, len(props))
	used := make(map[string]bool)
	for _, n := range order {
		for _, p := range props {
			if p.name == n && !used[n] {
				out = append(out, p)
				used[n] = true
			}
		}
	}
	for _, p := range props {
		if !used[p.name] {
			out = append(out, p)
		}
	}
	return out
}
