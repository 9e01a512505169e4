package emulator

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
)

// aspectRatios are the aspect ratios image requests may ask for, and
// imageSizes1K the real pixel sizes of a "1K" image of each (as Gemini 3 Pro
// Image answers). "2K" doubles both sides, "4K" quadruples them; the
// emulator then multiplies by Config.ImageScale.
var aspectRatios = []string{"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"}

// AspectRatios returns the aspect ratios image requests may ask for
// (imageConfig.aspectRatio); others answer 400 INVALID_ARGUMENT.
func AspectRatios() []string { return slices.Clone(aspectRatios) }

var imageSizes1K = map[string][2]int{
	"1:1":  {1024, 1024},
	"2:3":  {848, 1264},
	"3:2":  {1264, 848},
	"3:4":  {896, 1200},
	"4:3":  {1200, 896},
	"4:5":  {928, 1152},
	"5:4":  {1152, 928},
	"9:16": {768, 1376},
	"16:9": {1376, 768},
	"21:9": {1584, 672},
}

var imageSizeFactor = map[string]int{"1K": 1, "2K": 2, "4K": 4}

// minImageSide is the shortest side of a generated image, whatever the scale.
const minImageSide = 16

// RealImageSize is the size the real API gives an image of aspect ratio and
// size ("" means "1:1" and "1K"); ok is false for values it does not accept.
func RealImageSize(aspect, size string) (w, h int, ok bool) {
	if aspect == "" {
		aspect = "1:1"
	}
	if size == "" {
		size = "1K"
	}
	wh, ok1 := imageSizes1K[aspect]
	f, ok2 := imageSizeFactor[size]
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return wh[0] * f, wh[1] * f, true
}

// scaledSize applies scale to the real size, keeping the shortest side at
// least minImageSide.
func scaledSize(w, h int, scale float64) (int, int) {
	short := min(w, h)
	if float64(short)*scale < minImageSide {
		scale = minImageSide / float64(short)
	}
	return max(1, int(math.Round(float64(w)*scale))), max(1, int(math.Round(float64(h)*scale)))
}

func imageConfigError(req *request) *apiError {
	const path = "* GenerateContentRequest.generation_config.image_config."
	if req.aspectRatio != "" {
		if _, ok := imageSizes1K[req.aspectRatio]; !ok {
			return badRequestError(fmt.Sprintf("%saspect_ratio: unsupported aspect ratio %q; supported values are %s\n",
				path, req.aspectRatio, strings.Join(aspectRatios, ", ")))
		}
	}
	if req.imageSize != "" {
		if _, ok := imageSizeFactor[req.imageSize]; !ok {
			return badRequestError(fmt.Sprintf("%simage_size: unsupported image size %q; supported values are 1K, 2K, 4K\n", path, req.imageSize))
		}
	}
	return nil
}

// imageOutputTokens is what the real API bills for one image of size.
func imageOutputTokens(size string) int {
	if size == "4K" {
		return 2000
	}
	return 1120
}

// renderPNG draws a picture determined by seed: a two-colour gradient sky,
// a sun, layered hills and a band of shapes, with a fine grain, so images
// differ per prompt and are never blank or of one colour.
// pool may be nil.
func renderPNG(seed uint64, w, h int, pool png.EncoderBufferPool) []byte {
	r := rand.New(rand.NewPCG(seed, seed>>17^0x5bd1e995))
	hue := r.Float64() * 360
	sky0 := hsv(hue, 0.35+0.3*r.Float64(), 0.95)
	sky1 := hsv(math.Mod(hue+40+60*r.Float64(), 360), 0.55+0.3*r.Float64(), 0.55+0.3*r.Float64())
	sun := hsv(math.Mod(hue+180, 360), 0.6, 1)
	hills := make([]rgb, 3)
	for i := range hills {
		hills[i] = hsv(math.Mod(hue+120+25*float64(i)+30*r.Float64(), 360), 0.5+0.15*float64(i), 0.65-0.17*float64(i))
	}
	angle := r.Float64() * math.Pi
	dx, dy := math.Cos(angle), math.Sin(angle)
	sunX, sunY := (0.2+0.6*r.Float64())*float64(w), (0.15+0.3*r.Float64())*float64(h)
	sunR := (0.08 + 0.1*r.Float64()) * float64(min(w, h))
	type wave struct{ base, amp, freq, phase float64 }
	waves := make([]wave, len(hills))
	for i := range waves {
		waves[i] = wave{
			base:  (0.5 + 0.15*float64(i) + 0.05*r.Float64()) * float64(h),
			amp:   (0.03 + 0.06*r.Float64()) * float64(h),
			freq:  (1 + 3*r.Float64()) * 2 * math.Pi / float64(w),
			phase: r.Float64() * 2 * math.Pi,
		}
	}
	type box struct {
		x0, y0, x1, y1 int
		c              rgb
	}
	// Towers standing on the farthest hill.
	boxes := make([]box, 2+r.IntN(4))
	for i := range boxes {
		bw, bh := max(2, int((0.03+0.07*r.Float64())*float64(w))), int((0.1+0.2*r.Float64())*float64(h))
		x0 := r.IntN(max(1, w-bw))
		y1 := int(waves[0].base + waves[0].amp)
		boxes[i] = box{x0, y1 - bh - int(waves[0].amp), x0 + bw, y1, hsv(math.Mod(hue+200+40*r.Float64(), 360), 0.4, 0.3+0.4*r.Float64())}
	}
	norm := math.Abs(dx)*float64(w) + math.Abs(dy)*float64(h)
	off := 0.0
	if dx < 0 {
		off = math.Abs(dx) * float64(w) / norm
	}
	// Hill heights per column.
	ridge := make([][]float64, len(waves))
	for i, wv := range waves {
		ridge[i] = make([]float64, w)
		for x := range ridge[i] {
			ridge[i][x] = wv.base + wv.amp*math.Sin(float64(x)*wv.freq+wv.phase)
		}
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	glowR := sunR * 1.6
	for y := 0; y < h; y++ {
		fy := float64(y)
		row := img.Pix[y*img.Stride:]
		for x := 0; x < w; x++ {
			fx := float64(x)
			c := mix(sky0, sky1, (fx*dx+fy*dy)/norm+off)
			if ddx, ddy := fx-sunX, fy-sunY; math.Abs(ddx) < glowR && math.Abs(ddy) < glowR {
				if d := math.Hypot(ddx, ddy); d < glowR {
					glow := 1 - d/glowR
					if d < sunR {
						glow = 1
					}
					c = mix(c, sun, glow*0.9)
				}
			}
			for _, b := range boxes {
				if x >= b.x0 && x < b.x1 && y >= b.y0 && y < b.y1 {
					c = b.c
				}
			}
			for i := range waves {
				if fy > ridge[i][x] {
					c = mix(hills[i], sky1, 0.15*(fy/float64(h)))
				}
			}
			// Fine grain so the picture has many distinct colours.
			n := int(grain(seed, x, y)%9) - 4
			p := row[4*x : 4*x+4 : 4*x+4]
			p[0], p[1], p[2], p[3] = clamp(c.r+n), clamp(c.g+n), clamp(c.b+n), 255
		}
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed, BufferPool: pool}
	if err := enc.Encode(&buf, img); err != nil {
		panic("emulator: encoding a PNG to memory cannot fail: " + err.Error())
	}
	return buf.Bytes()
}

// pngBuffers reuses the PNG encoder's buffers (about 1 MB each) across images.
type pngBuffers struct{ p sync.Pool }

func (b *pngBuffers) Get() *png.EncoderBuffer {
	if x, ok := b.p.Get().(*png.EncoderBuffer); ok {
		return x
	}
	return nil
}

func (b *pngBuffers) Put(x *png.EncoderBuffer) { b.p.Put(x) }

type rgb struct{ r, g, b int }

func hsv(h, s, v float64) rgb {
	c := v * s
	x := c * (1 - math.Abs(math.Mod(h/60, 2)-1))
	m := v - c
	var r, g, b float64
	switch {
	case h < 60:
		r, g = c, x
	case h < 120:
		r, g = x, c
	case h < 180:
		g, b = c, x
	case h < 240:
		g, b = x, c
	case h < 300:
		r, b = x, c
	default:
		r, b = c, x
	}
	return rgb{int((r + m) * 255), int((g + m) * 255), int((b + m) * 255)}
}

func mix(a, b rgb, t float64) rgb {
	t = math.Max(0, math.Min(1, t))
	return rgb{
		int(float64(a.r)*(1-t) + float64(b.r)*t),
		int(float64(a.g)*(1-t) + float64(b.g)*t),
		int(float64(a.b)*(1-t) + float64(b.b)*t),
	}
}

func clamp(v int) uint8 {
	return uint8(max(0, min(255, v)))
}

func grain(seed uint64, x, y int) uint64 {
	z := seed ^ uint64(x)*0x9e3779b97f4a7c15 ^ uint64(y)*0xc2b2ae3d27d4eb4f
	z ^= z >> 31
	z *= 0xbf58476d1ce4e5b9
	z ^= z >> 29
	return z
}
