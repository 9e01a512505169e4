package config

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/slideshowd/slideshowd/internal/redact"
)

// RedisURL is the address of the Redis server shared by the processes of a
// cluster: redis://[[user]:password@]host[:port][/db] or rediss:// for TLS.
// Its String and GoString hide the password, so a Config printed with %v
// or %#v shows none.
type RedisURL string

// String returns the URL with its user information replaced by
// "[REDACTED]" (and a URL that does not parse as "<invalid URL>").
func (r RedisURL) String() string {
	if r == "" {
		return ""
	}
	u, err := url.Parse(string(r))
	if err != nil {
		return "<invalid URL>"
	}
	return redact.String(u.String())
}

// GoString is String quoted, for %#v.
func (r RedisURL) GoString() string { return strconv.Quote(r.String()) }

// Options parses the URL into go-redis client options. Errors name the
// field (redis_url, or SLIDESHOWD_REDIS_URL's value) and never the
// password.
func (r RedisURL) Options() (*redis.Options, error) {
	u, err := url.Parse(string(r))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // without the URL: it holds the password
		}
		return nil, fmt.Errorf("config: redis_url: not a URL: %v (the value is not shown)", err)
	}
	shown := strconv.Quote(redact.String(u.String()))
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
