package redistest_test

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"

	"github.com/slideshowd/slideshowd/internal/redistest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestStartRestart: the server answers, a restart without persistence comes
// back empty, one with the append-only file keeps what was written, and a
// password is required when set.
func TestStartRestart(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		opts redistest.Options
		kept bool
	}{
		{"no persistence", redistest.Options{}, false},
		{"append-only", redistest.Options{AppendOnly: true, Password: "s3cr3t-pw"}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := redistest.Start(t, tt.opts)
			o, err := redis.ParseURL(s.URL())
			if err != nil {
				t.Fatal(err)
			}
			c := redis.NewClient(o)
			defer c.Close()
			if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			s.Stop()
			if s.Running() {
				t.Fatal("running after Stop")
			}
			if err := c.Get(ctx, "k").Err(); err == nil {
				t.Fatal("a stopped server answered")
			}
			s.Restart()
			v, err := c.Get(ctx, "k").Result()
			switch {
			case tt.kept && (err != nil || v != "v"):
				t.Errorf("after restart: %q, %v; want the value kept", v, err)
			case !tt.kept && err != redis.Nil:
				t.Errorf("after restart: %q, %v; want empty", v, err)
			}
			if tt.opts.Password != "" {
				bare := redis.NewClient(&redis.Options{Addr: s.Addr()})
				defer bare.Close()
				if err := bare.Ping(ctx).Err(); err == nil {
					t.Error("a client without the password was served")
				}
			}
			s.Stop()
			s.RestartEmpty()
			if err := c.Get(ctx, "k").Err(); err != redis.Nil {
				t.Errorf("after RestartEmpty: %v; want empty", err)
			}
			s.Kill()
			s.Stop() // stopping a stopped server does nothing
		})
	}
}
