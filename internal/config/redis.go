package config

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redact"
)

// RedisURL is the address of the Redis server shared by the processes of a
// cluster: redis://[[user]:password@]host[:port][/db] or rediss:// for TLS.
// Its String and GoString hide the password, so a Config printed with %v
// or %#v shows none.
type RedisURL string

// String returns the URL with its user information replaced by
// "[REDACTED]" (and a URL that does not parse as "<invalid URL>"). A URL
// mistyped so that its user information does not parse as such
// ("redis:/:PASSWORD@host") still shows none: see shownURL.
func (r RedisURL) String() string {
	if r == "" {
		return ""
	}
	if _, err := url.Parse(string(r)); err != nil {
		return "<invalid URL>"
	}
	return shownURL(string(r))
}

// shownURL returns a Redis URL as errors and String may show it:
// redact.URL, showing the values of go-redis's options only (a mistyped
// URL's password, "?password=PASSWORD" and a fragment are hidden).
func shownURL(raw string) string {
	return redact.URL(raw, func(k string) bool { return redisOptions[k] })
}

// redisOptions are the query options of a Redis URL that go-redis reads
// (redis.ParseURL): their values are settings, shown in errors.
var redisOptions = map[string]bool{
	"db": true, "protocol": true, "client_name": true, "max_retries": true, "min_retry_backoff": true,
	"max_retry_backoff": true, "dial_timeout": true, "read_timeout": true, "write_timeout": true,
	"pool_fifo": true, "pool_size": true, "pool_timeout": true, "min_idle_conns": true,
	"max_idle_conns": true, "max_active_conns": true, "max_concurrent_dials": true,
	"pipeline_pool_size": true, "pipeline_read_buffer_size": true, "pipeline_write_buffer_size": true,
	"conn_max_idle_time": true, "idle_timeout": true, "conn_max_lifetime": true, "max_conn_age": true,
	"conn_max_lifetime_jitter": true, "skip_verify": true,
}

// GoString is String quoted, for %#v.
func (r RedisURL) GoString() string { return strconv.Quote(r.String()) }

// Options parses the URL into go-redis client options. Errors name the
// field (redis_url, or SLIDESHOWD_REDIS_URL's value) and never the
// password.
func (r RedisURL) Options() (*redis.Options, error) {
	u, err := url.Parse(string(r))
	if err != nil {
		// A fixed text: net/url's quotes the input (a password typed
		// where the port goes: "invalid port \":PASSWORD\" after host").
		return nil, fmt.Errorf("config: redis_url: not a URL: %s (the value is not shown)", redact.ParseError(err))
	}
	shown := strconv.Quote(shownURL(string(r)))
	if u.User == nil && strings.Contains(string(r), "@") {
		// The user information is mistyped (it parsed as the path, the
		// opaque part or the query): go-redis's message would quote it.
		return nil, fieldErr("redis_url", shown, "the user information is not where a URL has it: want redis:// (or rediss://), then user:password and '@' when Redis wants a password, then host[:port][/db]")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return nil, fieldErr("redis_url", shown, "want redis:// or rediss:// (TLS), then host[:port][/db]")
	}
	if u.Hostname() == "" {
		return nil, fieldErr("redis_url", shown, "no host")
	}
	if u.Opaque != "" || u.Fragment != "" {
		return nil, fieldErr("redis_url", shown, "want redis:// or rediss:// (TLS), then host[:port][/db]")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n <= 0 || n > 65535 {
			return nil, fieldErr("redis_url", shown, "port must be a number in 1..65535")
		}
	}
	o, err := redis.ParseURL(string(r))
	if err != nil {
		// go-redis's messages name the path or the query option, never the
		// userinfo.
		return nil, fieldErr("redis_url", shown, err.Error())
	}
	if o.DB < 0 {
		return nil, fieldErr("redis_url", shown, "database number must be >= 0")
	}
	return o, nil
}
