package emulator

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func BenchmarkRenderPNG(b *testing.B) {
	w, h := scaledSize(1024, 1024, DefaultImageScale)
	var pool pngBuffers
	b.ReportAllocs()
	for b.Loop() {
		renderPNG(42, w, h, &pool)
	}
}

// BenchmarkGenerateContent is one text request through the genai client
// and the in-process transport, on one lane.
func BenchmarkGenerateContent(b *testing.B) {
	e := mustNew(b, Config{Keys: []Key{{Name: "k", Secret: "s"}}, Models: map[string]Limits{textModel: {}}})
	c := client(b, e, "s")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := generate(b.Context(), c, textModel, slidesPrompt); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkServeHTTPParallel measures contention: many goroutines, many
// keys, rate limits enforced.
func BenchmarkServeHTTPParallel(b *testing.B) {
	cfg := Config{Models: map[string]Limits{textModel: {RPM: 1 << 30, TPM: 1 << 30}}}
	for i := range 16 {
		cfg.Keys = append(cfg.Keys, Key{Name: fmt.Sprint("k", i), Secret: fmt.Sprint("s", i)})
	}
	e := mustNew(b, cfg)
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		secret := fmt.Sprint("s", next.Add(1)%16)
		for pb.Next() {
			r := httptest.NewRequest(http.MethodPost, genPath, strings.NewReader(simpleBody))
			r.Header.Set("x-goog-api-key", secret)
			w := httptest.NewRecorder()
			e.ServeHTTP(w, r)
			if w.Code != 200 {
				b.Fatalf("status %d", w.Code)
			}
		}
	})
}
