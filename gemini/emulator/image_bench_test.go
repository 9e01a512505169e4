package emulator

import "testing"

func BenchmarkRenderPNG(b *testing.B) {
	w, h := scaledSize(1024, 1024, DefaultImageScale)
	var pool pngBuffers
	b.ReportAllocs()
	for b.Loop() {
		renderPNG(42, w, h, &pool)
	}
}
