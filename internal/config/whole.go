package config

import (
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"
)

// intFields returns the dotted paths of the integer fields of a Config file
// ("max_active", "classes.image.rpm", ...), found from the yaml tags of
// Config's own fields: every field of an integer kind that does not decode
// itself (Duration is an int64 written as "30s"). A sequence adds "[]".
var intFields = sync.OnceValue(func() map[string]bool {
	paths := make(map[string]bool)
	unmarshaler := reflect.TypeFor[yaml.Unmarshaler]()
	var visit func(t reflect.Type, prefix string)
	visit = func(t reflect.Type, prefix string) {
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		if reflect.PointerTo(t).Implements(unmarshaler) {
			return
		}
		switch t.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			paths[prefix] = true
		case reflect.Slice, reflect.Array:
			visit(t.Elem(), prefix+"[]")
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" || name == "" {
					continue
				}
				p := name
				if prefix != "" {
					p = prefix + "." + name
				}
				visit(f.Type, p)
			}
		}
	}
	visit(reflect.TypeFor[Config](), "")
	return paths
})

var indexRe = regexp.MustCompile(`\[\d+\]`)

// notWhole reports every integer field (intFields) whose value is a YAML
// float: 18.5, 1e2, 18.0, .inf. The decoder would truncate it silently (18.5
// became 18). Only plain integers are accepted, as the HTTP API and batch
// files accept them (JSON 2.5 and 1e1 are refused there too). A float 0 in a
// field of zeroRules is left to explicitZeros, which says what 0 means.
func notWhole(name string, root *yaml.Node) []error {
	var found []error
	walk(root, "", func(n, _ *yaml.Node, path string) bool {
		if n.Kind != yaml.ScalarNode || n.Tag != "!!float" || !intFields()[indexRe.ReplaceAllString(path, "[]")] {
			return true
		}
		var f float64
		if err := n.Decode(&f); err != nil {
			return true // the decoder names it
		}
		if _, ok := zeroRules[path]; ok && f == 0 {
			return true
		}
		why := "want a whole number"
		switch {
		case digitsRe.MatchString(n.Value):
			why = "out of range" // YAML makes a float of an integer past 64 bits
		case f == math.Trunc(f) && math.Abs(f) < 1<<53:
			why = "want a whole number written in plain digits: " + strconv.FormatFloat(f, 'f', -1, 64)
		}
		found = append(found, fmt.Errorf("config: %s: line %d: %s: %s: %s", name, n.Line, path, n.Value, why))
		return true
	})
	return found
}
