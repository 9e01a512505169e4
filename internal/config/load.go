package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"go.yaml.in/yaml/v3"

	"github.com/slideshowd/slideshowd/internal/redact"
)

// Options say where Load reads from.
type Options struct {
	// Path of the config file; "" means DefaultFile in the working directory
	// when it exists, else none (defaults and environment only).
	Path string
	// Getenv reads the environment. Default os.Getenv.
	Getenv func(string) string
	// NeedSecrets makes Load read every key's secret (secret_env) and fail
	// when one is missing. Without it, keys are known by id and project only.
	NeedSecrets bool
	// Client loads for a command that talks to a running daemon or only
	// plans (usage, keys, jobs, store backup, batch -dry-run): the daemon
	// holds the keys, so none is required; keys that are configured are
	// still validated. A client command that falls back to work needing
	// the keys (the data directory's lanes) checks len(Config.Keys) and
	// says so itself.
	Client bool
}

// MaxFileBytes bounds the size of a config file.
const MaxFileBytes = 1 << 20

// Load reads the config file (see Options.Path), applies the environment
// overrides, fills in the defaults and validates. Warnings (a literal secret
// in the file) are for the caller to log; they never hold a secret. Errors
// are one line naming the field, the value and why.
func Load(opts Options) (Config, []string, error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	// Every error goes through one redaction of every secret Load may have
	// seen: literal secrets in the file, the keys of GEMINI_API_KEYS, the
	// variables named by secret_env, the token.
	secrets := []string{getenv(EnvToken)}
	for _, e := range strings.Split(getenv(EnvKeys), ",") {
		_, after, _ := strings.Cut(e, ":") // PROJECT:SECRET
		secrets = append(secrets, e, strings.TrimSpace(e), strings.TrimSpace(after))
	}
	c, warnings, errs := checkConfig(opts, getenv, &secrets)
	if len(errs) > 0 {
		return Config{}, nil, redactError(errs[0], secrets)
	}
	return c, warnings, nil
}

// Check is Load reporting every problem rather than the first: a file that
// cannot be read or decoded (syntax, unknown field, wrong type) is one problem,
// followed by those of the environment variables alone (GEMINI_API_KEYS,
// GEMINI_BASE_URL, SLIDESHOWD_TOKEN); otherwise each integer field written
// with a fraction or an exponent (18.5, 1e2: refused, never truncated), each
// field written as 0 where 0 is not allowed, each key whose
// secret_env is not set (with Options.NeedSecrets), and each invalid field
// is one, redacted as Load's error. The Config is valid only when there is
// no problem.
func Check(opts Options) (Config, []string, []error) {
	getenv := opts.Getenv
	if getenv == nil {
		getenv = os.Getenv
	}
	secrets := []string{getenv(EnvToken)}
	for _, e := range strings.Split(getenv(EnvKeys), ",") {
		_, after, _ := strings.Cut(e, ":") // PROJECT:SECRET
		secrets = append(secrets, e, strings.TrimSpace(e), strings.TrimSpace(after))
	}
	c, warnings, errs := checkConfig(opts, getenv, &secrets)
	for i := range errs {
		errs[i] = redactError(errs[i], secrets)
	}
	return c, warnings, errs
}

// checkConfig loads the configuration and returns every problem, in the
// order of Check.
func checkConfig(opts Options, getenv func(string) string, secrets *[]string) (Config, []string, []error) {
	var c Config
	var errs []error
	path := opts.Path
	if path == "" {
		if _, err := os.Stat(DefaultFile); err == nil {
			path = DefaultFile
		}
	}
	var mode fs.FileMode
	if path != "" {
		data, m, err := readFile(path)
		if err != nil {
			return Config{}, nil, append([]error{err}, envProblems(getenv)...)
		}
		mode = m
		var root *yaml.Node
		c, root, err = parse(path, data, secrets, getenv)
		if err != nil {
			// The file's problem is one; the environment's own problems
			// are still found (check promises one line per problem).
			return Config{}, nil, append([]error{err}, envProblems(getenv)...)
		}
		errs = append(errs, notWhole(path, root)...)
		errs = append(errs, explicitZeros(path, root)...)
		c.File = path
	}
	for _, k := range c.Keys {
		*secrets = append(*secrets, k.Secret)
		if k.SecretEnv != "" && envPattern.MatchString(k.SecretEnv) {
			v := getenv(k.SecretEnv)
			*secrets = append(*secrets, v, strings.TrimSpace(v))
		}
	}
	var warnings []string
	literal := false
	for i, k := range c.Keys {
		if k.Secret != "" {
			literal = true
			warnings = append(warnings, fmt.Sprintf("config: keys[%d].secret (key %q): a literal secret in the config file; prefer secret_env", i, k.ID))
		}
	}
	if literal && mode.Perm()&0o044 != 0 {
		warnings = append(warnings, fmt.Sprintf("config: %s holds a literal secret and is readable by others (mode %04o); chmod 600 it", redact.String(path), mode.Perm()))
	}
	envErrs := c.applyEnv(getenv, opts.NeedSecrets)
	errs = append(errs, envErrs...)
	// A bad GEMINI_API_KEYS leaves no keys: its entries' errors say why,
	// and "keys: none" would send the reader to set what is set.
	keysBad := strings.TrimSpace(getenv(EnvKeys)) != "" && len(envErrs) > 0
	c.withDefaults()
	errs = append(errs, c.problems(opts.Client || keysBad)...)
	return c, warnings, errs
}

// envProblems returns the problems of the environment variables alone
// (GEMINI_API_KEYS, GEMINI_BASE_URL, SLIDESHOWD_TOKEN), for a config file
// that cannot be decoded: the rest of the checks need the file.
func envProblems(getenv func(string) string) []error {
	var errs []error
	if v := getenv(EnvKeys); strings.TrimSpace(v) != "" {
		_, kerrs := parseEnvKeys(v)
		errs = append(errs, kerrs...)
	}
	if v := getenv(EnvBaseURL); v != "" {
		if err := checkBaseURL(v); err != nil {
			errs = append(errs, err)
		}
	}
	return append(errs, tokenProblems(getenv(EnvToken))...)
}

// redactError returns err with its text passed through the redaction of
// secrets (see internal/redact); nil stays nil.
func redactError(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	return errors.New(redact.New(secrets...).String(err.Error()))
}

// readFile reads a config file: a regular file (a FIFO, device or
// directory is refused without blocking) of at most MaxFileBytes.
func readFile(path string) ([]byte, fs.FileMode, error) {
	// O_NONBLOCK: opening a FIFO must not wait for a writer.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("config: %s: no such file", path)
		}
		return nil, 0, fmt.Errorf("config: %v", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("config: %s: %v", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("config: %s: not a regular file (%s): want a YAML file", path, FileKind(fi.Mode()))
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, 0, fmt.Errorf("config: %s: %v", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, 0, fmt.Errorf("config: %s: larger than %d bytes", path, MaxFileBytes)
	}
	return data, fi.Mode(), nil
}

// FileKind names the type of a file that is not regular, for an error
// ("a directory", "a named pipe", "a socket", "a device"; else "mode"
// and the mode). The config and batch files' images use it.
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "mode " + m.String()
}

// applyEnv applies the environment overrides and, with secrets, reads each
// key's secret; it reports every key whose secret cannot be read.
func (c *Config) applyEnv(getenv func(string) string, secrets bool) []error {
	if v := getenv(EnvBaseURL); v != "" {
		c.BaseURL = v
	}
	if v := getenv(EnvData); v != "" {
		c.Data = v
	}
	c.Token = getenv(EnvToken)
	if v := getenv(EnvRedis); v != "" {
		c.RedisURL = RedisURL(v)
	}
	if v := getenv(EnvKeys); strings.TrimSpace(v) != "" {
		// The variable replaces the file's keys even when an entry is
		// bad: its errors are then the keys' only problems.
		keys, errs := parseEnvKeys(v)
		c.Keys = keys
		return errs
	}
	if !secrets {
		return nil
	}
	var errs []error
	for i := range c.Keys {
		k := &c.Keys[i]
		if k.SecretEnv == "" || !envPattern.MatchString(k.SecretEnv) {
			continue // a literal secret, none, or a bad name: Validate names it
		}
		v := strings.TrimSpace(getenv(k.SecretEnv))
		if v == "" {
			errs = append(errs, fmt.Errorf("config: keys[%d].secret_env: %s: not set in the environment (key %q)", i, k.SecretEnv, k.ID))
			continue
		}
		k.Secret = v
	}
	return errs
}

// ParseEnvKeys parses the value of GEMINI_API_KEYS: comma-separated
// entries SECRET or PROJECT:SECRET, with ids key1..keyN in order. An entry
// without a project is its own project (named by its id); entries naming
// the same project share its quotas. Gemini API keys hold no ':'. The error
// is the first bad entry's (Check reports each); errors name the entry by
// position and never show any part of it.
func ParseEnvKeys(v string) ([]Key, error) {
	keys, errs := parseEnvKeys(v)
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return keys, nil
}

// parseEnvKeys is ParseEnvKeys returning one error for each bad entry (no
// keys when there is one).
func parseEnvKeys(v string) ([]Key, []error) {
	parts := strings.Split(v, ",")
	keys := make([]Key, 0, len(parts))
	seen := make(map[string]int, len(parts))
	var errs []error
	for i, p := range parts {
		p = strings.TrimSpace(p)
		if p == "" {
			errs = append(errs, fmt.Errorf("config: %s: entry %d of %d is empty", EnvKeys, i+1, len(parts)))
			continue
		}
		id := "key" + strconv.Itoa(i+1)
		project := id
		if pr, secret, ok := strings.Cut(p, ":"); ok {
			if !idPattern.MatchString(pr) {
				errs = append(errs, fmt.Errorf("config: %s: entry %d of %d: the part before ':' must be a project id (1 to 64 letters, digits, '.', '_' or '-'); the value is not shown", EnvKeys, i+1, len(parts)))
				continue
			}
			if p = strings.TrimSpace(secret); p == "" {
				// The part before ':' is not shown either: it may be a key
				// written with a stray ':'.
				errs = append(errs, fmt.Errorf("config: %s: entry %d of %d: no key after ':' (want PROJECT:SECRET); the value is not shown", EnvKeys, i+1, len(parts)))
				continue
			}
			project = pr
		}
		if j, dup := seen[p]; dup {
			errs = append(errs, fmt.Errorf("config: %s: entry %d is the same key as entry %d", EnvKeys, i+1, j+1))
			continue
		}
		seen[p] = i
		keys = append(keys, Key{ID: id, Project: project, Secret: p})
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return keys, nil
}

// Parse decodes a config file strictly (unknown fields are errors) without
// defaults, environment or validation. name is the file's name, for errors.
// Errors are one line: the file, the line, and the field's path when known.
func Parse(name string, data []byte) (Config, error) {
	var secrets []string
	c, root, err := parse(name, data, &secrets, nil)
	if err == nil {
		if zs := append(notWhole(name, root), explicitZeros(name, root)...); len(zs) > 0 {
			err = zs[0]
		}
	}
	if err != nil {
		return Config{}, redactError(err, secrets)
	}
	return c, nil
}

// parse is Parse without the check of explicit zeros, returning the
// document's node tree too; it adds the file's literal secrets and, with
// getenv, the values of the variables its secret_env fields name to
// secrets (even when decoding fails later), for the caller's redaction.
func parse(name string, data []byte, secrets *[]string, getenv func(string) string) (Config, *yaml.Node, error) {
	var c Config
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return Config{}, nil, fmt.Errorf("config: %s: %s", name, oneLine(syntaxMessage(err)))
	}
	walk(&root, "", func(n, key *yaml.Node, _ string) bool {
		if key == nil || n.Kind != yaml.ScalarNode {
			return true
		}
		switch {
		case key.Value == "secret":
			*secrets = append(*secrets, n.Value, strings.TrimSpace(n.Value))
		case key.Value == "secret_env" && getenv != nil && envPattern.MatchString(n.Value):
			v := getenv(n.Value)
			*secrets = append(*secrets, v, strings.TrimSpace(v))
		}
		return true
	})
	if root.Kind == 0 { // empty document
		return c, &root, nil
	}
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 && root.Content[0].Kind != yaml.MappingNode {
		n := root.Content[0]
		if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
			return c, &root, nil
		}
		return Config{}, nil, fmt.Errorf("config: %s: line %d: want a mapping of settings (listen, keys, classes, ...)", name, n.Line)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err := dec.Decode(&c)
	if err == nil || errors.Is(err, io.EOF) {
		return c, &root, nil
	}
	return Config{}, nil, fmt.Errorf("config: %s: %s", name, describe(err, &root))
}

// zeroRules are the fields whose zero value means "the default" in a
// Config: written as 0 in a file, they are an error, so that 0 never
// silently means something else than what the error messages say.
var zeroRules = map[string]string{
	"daily_critical":            fmt.Sprintf("must be in (0, 1] (leave it out for the default, %v)", DefaultDailyCritical),
	"max_body_bytes":            fmt.Sprintf("must be at least %d (leave it out for the default, %d)", MinMaxBodyBytes, DefaultMaxBodyBytes),
	"max_active":                fmt.Sprintf("must be > 0 (leave it out for the default, %d)", DefaultMaxActive),
	"classes.text.rpm":          fmt.Sprintf("must be > 0 (leave it out for the default, %d)", DefaultTextRPM),
	"classes.text.rpd":          fmt.Sprintf("must be > 0 (leave it out for the default, %d)", DefaultTextRPD),
	"classes.text.concurrency":  "must be > 0 (leave it out to size it from the limits)",
	"classes.image.rpm":         fmt.Sprintf("must be > 0 (leave it out for the default, %d)", DefaultImageRPM),
	"classes.image.rpd":         fmt.Sprintf("must be > 0 (leave it out for the default, %d)", DefaultImageRPD),
	"classes.image.concurrency": "must be > 0 (leave it out to size it from the limits)",
}

// explicitZeros reports the fields of zeroRules written as 0.
func explicitZeros(name string, root *yaml.Node) []error {
	var found []error
	walk(root, "", func(n, key *yaml.Node, path string) bool {
		why, ok := zeroRules[path]
		if !ok || n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
			return true
		}
		var f float64
		if n.Decode(&f) != nil || f != 0 {
			return true
		}
		found = append(found, fmt.Errorf("config: %s: line %d: %s: %s: %s", name, n.Line, path, n.Value, why))
		return true
	})
	return found
}

var (
	lineRe    = regexp.MustCompile(`^line (\d+): (.*)$`)
	unknownRe = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	typeRe    = regexp.MustCompile("^cannot unmarshal !!(\\w+) (?:`(.*)` )?into (\\S+)$")
	digitsRe  = regexp.MustCompile(`^[-+]?[0-9]+$`)
)

// describe turns a decoding error into one line with the field's path.
func describe(err error, root *yaml.Node) string {
	var te *yaml.TypeError
	msg := err.Error()
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	m := lineRe.FindStringSubmatch(msg)
	if m == nil {
		return oneLine(syntaxMessage(err))
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	if u := unknownRe.FindStringSubmatch(rest); u != nil {
		path := keyPathAt(root, line, u[1])
		if path == "" {
			path = u[1]
		}
		return fmt.Sprintf("line %d: %s: unknown field", line, path)
	}
	t := typeRe.FindStringSubmatch(rest)
	if t == nil {
		path := valuePathAt(root, line)
		if path != "" {
			return fmt.Sprintf("line %d: %s: %s", line, path, oneLine(rest))
		}
		return fmt.Sprintf("line %d: %s", line, oneLine(rest))
	}
	kind, val, into := t[1], t[2], strings.TrimLeft(t[3], "*")
	var path string
	switch kind {
	case "seq", "map":
		// The list or mapping itself, not the first scalar inside it
		// ("classes: [1,2]" is about classes, not classes[0]).
		path = collectionPathAt(root, line, kind)
		val = map[string]string{"seq": "a list", "map": "a mapping"}[kind]
	default:
		path = valuePathAt(root, line)
		// yaml cuts long values ("AIzaSyP..."): quote the whole value,
		// so that the caller's redaction recognises a secret in it.
		if full, ok := scalarAt(root, line, val); ok {
			val = full
		}
		val = strconv.Quote(val)
	}
	why := "want " + wantOf(into)
	if isIntType(into) && (kind == "int" || kind == "float" && digitsRe.MatchString(strings.Trim(val, `"`))) {
		why = "out of range" // YAML makes a float of an integer past 64 bits
	} else if isIntType(into) && kind == "float" {
		why = "want a whole number"
	}
	if path == "" {
		return fmt.Sprintf("line %d: %s: %s", line, val, why)
	}
	return fmt.Sprintf("line %d: %s: %s: %s", line, path, val, why)
}

func isIntType(goType string) bool {
	return strings.HasPrefix(goType, "int") || strings.HasPrefix(goType, "uint")
}

// wantOf says what a field of the Go type named goType (as the decoder names
// it, without '*') takes: "a boolean (true or false)", "an integer", "a
// mapping of class names (text, image)", ... Mappings list their fields.
func wantOf(goType string) string {
	switch {
	case goType == "bool":
		return "a boolean (true or false)"
	case isIntType(goType):
		return "an integer"
	case strings.HasPrefix(goType, "float"):
		return "a number"
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	}
	if w, ok := typeWants()[goType]; ok {
		return w
	}
	return "a mapping"
}

// typeWants describes the named types of Config's fields, by the name the
// decoder gives them ("config.Classes"): a struct is a mapping of its yaml
// fields, a string type a string.
var typeWants = sync.OnceValue(func() map[string]string {
	wants := map[string]string{"string": "a string"}
	var visit func(t reflect.Type)
	visit = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice {
			t = t.Elem()
		}
		if _, seen := wants[t.String()]; seen {
			return
		}
		switch t.Kind() {
		case reflect.String:
			wants[t.String()] = "a string"
		case reflect.Struct:
			var names []string
			for i := range t.NumField() {
				f := t.Field(i)
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if !f.IsExported() || name == "-" || name == "" {
					continue
				}
				names = append(names, name)
			}
			wants[t.String()] = "a mapping (" + strings.Join(names, ", ") + ")"
			for i := range t.NumField() {
				visit(t.Field(i).Type)
			}
		}
	}
	visit(reflect.TypeFor[Config]())
	wants[reflect.TypeFor[Classes]().String()] = "a mapping of class names (text, image)"
	wants[reflect.TypeFor[Config]().String()] = "a mapping of settings (listen, keys, classes, ...)"
	return wants
})

// collectionPathAt returns the dotted path of the first list (kind "seq")
// or mapping ("map") that starts on line.
func collectionPathAt(root *yaml.Node, line int, kind string) string {
	want := yaml.SequenceNode
	if kind == "map" {
		want = yaml.MappingNode
	}
	var found string
	walk(root, "", func(n *yaml.Node, _ *yaml.Node, path string) bool {
		if n.Line == line && n.Kind == want {
			found = path
			return false
		}
		return true
	})
	if found == "" {
		return valuePathAt(root, line)
	}
	return found
}

func syntaxMessage(err error) string {
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// scalarAt returns the value of the scalar on line that yaml showed as
// shown (the value itself, or its first characters and "...").
func scalarAt(root *yaml.Node, line int, shown string) (string, bool) {
	prefix, cut := strings.CutSuffix(shown, "...")
	var found string
	ok := false
	walk(root, "", func(n *yaml.Node, _ *yaml.Node, _ string) bool {
		if n.Line == line && n.Kind == yaml.ScalarNode && (n.Value == shown || cut && strings.HasPrefix(n.Value, prefix)) {
			found, ok = n.Value, true
			return false
		}
		return true
	})
	return found, ok
}

// keyPathAt returns the dotted path of the mapping key named name on line.
func keyPathAt(root *yaml.Node, line int, name string) string {
	var found string
	walk(root, "", func(n *yaml.Node, key *yaml.Node, path string) bool {
		if key != nil && key.Line == line && key.Value == name {
			found = path
			return false
		}
		return true
	})
	return found
}

// valuePathAt returns the dotted path of the scalar value on line, or else
// of the value whose key is on line.
func valuePathAt(root *yaml.Node, line int) string {
	var found string
	walk(root, "", func(n *yaml.Node, key *yaml.Node, path string) bool {
		if n.Line == line && n.Kind == yaml.ScalarNode {
			found = path
			return false
		}
		return true
	})
	if found != "" {
		return found
	}
	walk(root, "", func(n *yaml.Node, key *yaml.Node, path string) bool {
		if (key != nil && key.Line == line) || (key == nil && n.Line == line) {
			found = path
			return false
		}
		return true
	})
	return found
}

// walk visits every node below n with its path; key is the mapping key of
// a mapping value, nil otherwise. fn returns false to stop.
func walk(n *yaml.Node, path string, fn func(n, key *yaml.Node, path string) bool) bool {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if !walk(c, path, fn) {
				return false
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if !fn(v, k, p) || !walk(v, p, fn) {
				return false
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := path + "[" + strconv.Itoa(i) + "]"
			if !fn(c, nil, p) || !walk(c, p, fn) {
				return false
			}
		}
	}
	return true
}
