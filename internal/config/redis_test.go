package config

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// TestRedisURL: redis_url from the file or SLIDESHOWD_REDIS_URL, parsed into
// client options; the password never shows in an error or a String.
func TestRedisURL(t *testing.T) {
	const pw = "pa55-w0rd-secret"
	for _, tt := range []struct {
		name     string
		yaml     string
		env      string
		addr     string
		db       int
		user     string
		password string
		tls      bool
	}{
		{"absent", minimal, "", "", 0, "", "", false},
		{"file", minimal + "redis_url: redis://127.0.0.1:6380/2\n", "", "127.0.0.1:6380", 2, "", "", false},
		{"default port", minimal + "redis_url: redis://redis.internal\n", "", "redis.internal:6379", 0, "", "", false},
		{"password", minimal + "redis_url: redis://:" + pw + "@10.0.0.5:6379/1\n", "", "10.0.0.5:6379", 1, "", pw, false},
		{"user and password, tls", minimal, "rediss://app:" + pw + "@r.example:6390/3", "r.example:6390", 3, "app", pw, true},
		{"env wins", minimal + "redis_url: redis://file:1/0\n", "redis://env:2/5", "env:2", 5, "", "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := load(t, tt.yaml, map[string]string{"K1": "s3cr3t-one", EnvRedis: tt.env})
			if err != nil {
				t.Fatal(err)
			}
			if c.Cluster != DefaultCluster {
				t.Errorf("Cluster = %q, want %q", c.Cluster, DefaultCluster)
			}
			if tt.addr == "" {
				if c.RedisURL != "" {
					t.Errorf("RedisURL = %q, want none", c.RedisURL)
				}
				return
			}
			o, err := c.RedisURL.Options()
			if err != nil {
				t.Fatal(err)
			}
			if o.Addr != tt.addr || o.DB != tt.db || o.Username != tt.user || o.Password != tt.password || (o.TLSConfig != nil) != tt.tls {
				t.Errorf("options = addr %q db %d user %q password %q tls %v; want %q %d %q %q %v",
					o.Addr, o.DB, o.Username, o.Password, o.TLSConfig != nil, tt.addr, tt.db, tt.user, tt.password, tt.tls)
			}
			for _, s := range []string{c.RedisURL.String(), fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c)} {
				if strings.Contains(s, pw) {
					t.Errorf("password shown: %s", s)
				}
			}
		})
	}
}

// TestRedisURLErrors: a bad redis_url or cluster stops Load with one line
// naming the field; the password is never in it.
func TestRedisURLErrors(t *testing.T) {
	const pw = "pa55-w0rd-secret"
	vars := func(u string) map[string]string { return map[string]string{"K1": "s3cr3t-one", EnvRedis: u} }
	for _, tt := range []struct {
		name string
		yaml string
		vars map[string]string
		want string
	}{
		{"scheme", minimal, vars("http://:" + pw + "@h:1"), `config: redis_url: "http://[REDACTED]@h:1": want redis:// or rediss:// (TLS), then host[:port][/db]`},
		{"no host", minimal, vars("redis://:" + pw + "@/0"), `config: redis_url: "redis://[REDACTED]@/0": no host`},
		{"port", minimal, vars("redis://:" + pw + "@h:99999"), `config: redis_url: "redis://[REDACTED]@h:99999": port must be a number in 1..65535`},
		{"db", minimal, vars("redis://:" + pw + "@h:1/abc"), `config: redis_url: "redis://[REDACTED]@h:1/abc": redis: invalid database number: "abc"`},
		{"path", minimal, vars("redis://:" + pw + "@h:1/1/2"), `config: redis_url: "redis://[REDACTED]@h:1/1/2": redis: invalid URL path: /1/2`},
		{"option", minimal, vars("redis://:" + pw + "@h:1/0?colour=red"), `config: redis_url: "redis://[REDACTED]@h:1/0?colour=[REDACTED]": redis: unexpected option: colour`},
		{"bad option value", minimal, vars("redis://h:1/0?dial_timeout=soon"), `config: redis_url: "redis://h:1/0?dial_timeout=soon": redis: invalid dial_timeout duration: time: invalid duration "soon"`},
		{"unparsable", minimal, vars("redis://:" + pw + "@h:1/%zz"), `config: redis_url: not a URL: invalid URL escape (a '%' not followed by two hexadecimal digits, or an escape not allowed where it is) (the value is not shown)`},
		{"control character", minimal, vars("redis://:" + pw + "\x7f@h:1"), `config: redis_url: not a URL: invalid control character in the URL (the value is not shown)`},
		{"mistyped slashes", minimal, vars("redis:/:" + pw + "@h"), `config: redis_url: "redis:/[REDACTED]@h": the user information is not where a URL has it: want redis:// (or rediss://), then user:password and '@' when Redis wants a password, then host[:port][/db]`},
		{"file", minimal + "redis_url: redis://:" + pw + "@h:0\n", vars(""), `config: redis_url: "redis://[REDACTED]@h:0": port must be a number in 1..65535`},
		{"cluster", minimal + "cluster: \"a b\"\n", vars(""), `config: cluster: "a b": want 1 to 64 letters, digits, '.', '_' or '-'`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := load(t, tt.yaml, tt.vars)
			if err == nil {
				t.Fatal("no error")
			}
			if err.Error() != tt.want {
				t.Errorf("error\n got %s\nwant %s", err, tt.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("password in the error: %s", err)
			}
		})
	}
}

// mistypedURLs is a corpus of URLs whose user information does not parse as
// such (a newcomer's typos, found in the field: the password then sits in
// the path or the opaque part), each with the URL's scheme to use: no error
// nor String may show the password.
var mistypedURLs = []string{
	"%s:/:PASSWORD@h",
	"%s:PASSWORD@h",
	"%s//:PASSWORD@h",
	"%s:///:PASSWORD@h",
	"%s:/user:PASSWORD@h:1/0",
	"%s:://:PASSWORD@h",
	"%s ://:PASSWORD@h",
	"//:PASSWORD@h",
	":PASSWORD@h",
	"%s://:PASS@WORD@",
	"%s://h/:PASSWORD@",
	"%s:/:PASSWORD@h?x=%%zz",
	// Found by a newcomer: the password pasted alone, or as a query
	// option go-redis does not take.
	"PASSWORD",
	"PASS WORD",
	"%s:PASSWORD",
	"%s:/PASSWORD",
	"%s://h:1/0?password=PASSWORD",
	"%s://h:1/0?dial_timeout=1s&pass=PASSWORD#WORD",
}

// TestMistypedURLs: redis_url and base_url values from mistypedURLs are
// refused with one line naming the field, and the password is in no error
// and no String.
func TestMistypedURLs(t *testing.T) {
	for _, f := range []struct{ field, scheme string }{{"redis_url", "redis"}, {"base_url", "https"}} {
		for _, shape := range mistypedURLs {
			raw := shape
			if strings.Contains(shape, "%s") {
				raw = fmt.Sprintf(shape, f.scheme)
			}
			t.Run(f.field+"/"+raw, func(t *testing.T) {
				v := map[string]string{"K1": "s3cr3t-one"}
				yaml := minimal
				if f.field == "redis_url" {
					v[EnvRedis] = raw
				} else {
					yaml += "base_url: " + strconv.Quote(raw) + "\n"
				}
				_, _, err := load(t, yaml, v)
				if err == nil {
					if f.field == "redis_url" {
						t.Fatal("no error")
					}
					return // a base URL with '@' in its path
				}
				if !strings.HasPrefix(err.Error(), "config: "+f.field+": ") {
					t.Errorf("error does not name %s: %s", f.field, err)
				}
				for _, pw := range []string{"PASSWORD", "PASS", "WORD"} {
					if strings.Contains(err.Error(), pw) {
						t.Errorf("password in the error: %s", err)
					}
				}
				if s := fmt.Sprint(RedisURL(raw)); strings.Contains(s, "WORD") || strings.Contains(s, "PASS") {
					t.Errorf("RedisURL String shows the password: %s", s)
				}
			})
		}
	}
}

// TestCluster: cluster prefixes the Redis keys; default "slideshowd".
func TestCluster(t *testing.T) {
	c, _, err := load(t, minimal+"cluster: prod-eu.1\n", map[string]string{"K1": "s3cr3t-one"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Cluster != "prod-eu.1" {
		t.Errorf("Cluster = %q", c.Cluster)
	}
}

// TestRedisTPM: tpm is shared through Redis like the other limits, so it is
// accepted with redis_url; a bad value is still refused, naming the field
// and the value.
func TestRedisTPM(t *testing.T) {
	vars := map[string]string{"K1": "s3cr3t-one"}
	c, _, err := load(t, minimal+"redis_url: redis://127.0.0.1:6380/0\nclasses:\n  text:\n    tpm: 5000\n  image:\n    tpm: 700\n", vars)
	if err != nil {
		t.Fatal(err)
	}
	if c.Classes.Text.TPM != 5000 || c.Classes.Image.TPM != 700 || c.RedisURL == "" {
		t.Errorf("text tpm %d, image tpm %d, redis_url %q", c.Classes.Text.TPM, c.Classes.Image.TPM, c.RedisURL)
	}
	_, _, err = load(t, minimal+"redis_url: redis://127.0.0.1:6380/0\nclasses:\n  image:\n    tpm: -7\n", vars)
	if want := "config: classes.image.tpm: -7: must be >= 0 (0 = not enforced)"; err == nil || err.Error() != want {
		t.Errorf("error %v, want %s", err, want)
	}
}
