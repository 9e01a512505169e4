package emulator

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // in the error; "" for valid
	}{
		{"zero value", Config{}, ""},
		{"keys", Config{Keys: []Key{{Name: "a", Secret: "1"}, {Name: "b", Secret: "2", Project: "p"}}}, ""},
		{"empty key name", Config{Keys: []Key{{Secret: "1"}}}, "keys[0].name: empty"},
		{"empty secret", Config{Keys: []Key{{Name: "a"}}}, `keys[0].secret (key "a"): empty`},
		{"duplicate name", Config{Keys: []Key{{Name: "a", Secret: "1"}, {Name: "a", Secret: "2"}}}, `keys[1].name: "a": duplicate`},
		{"duplicate secret", Config{Keys: []Key{{Name: "a", Secret: "1"}, {Name: "b", Secret: "1"}}}, `keys[1].secret (key "b")`},
		{"negative limit", Config{Models: map[string]Limits{"m": {RPM: -1}}}, `models["m"]`},
		{"empty model", Config{Models: map[string]Limits{"": {}}}, "models: empty model name"},
		{"layout", Config{Layout: Layout(9)}, "layout: 9"},
		{"image scale", Config{ImageScale: 2}, "imageScale: 2"},
		{"nan scale", Config{ImageScale: math.NaN()}, "imageScale: NaN"},
		{"rate", Config{Faults: Faults{Rate503: 1.5}}, "faults.rate503: 1.5"},
		{"negative rate", Config{Faults: Faults{NoImage: -0.1}}, "faults.noImage: -0.1"},
		{"rates sum", Config{Faults: Faults{Rate503: 0.6, Rate500: 0.6}}, "rate503+rate500+rate504"},
		{"body", Config{MaxBodyBytes: -1}, "maxBodyBytes: -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			_, newErr := New(tc.cfg)
			if tc.want == "" {
				if err != nil || newErr != nil {
					t.Fatalf("Validate %v, New %v", err, newErr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("Validate = %v, want ErrInvalidConfig with %q", err, tc.want)
			}
			if newErr == nil {
				t.Fatal("New accepted an invalid config")
			}
			if strings.Contains(err.Error(), `Secret: "1"`) {
				t.Fatal("the error shows a secret")
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	e := mustNew(t, Config{})
	if len(e.models) != 2 || e.models[DefaultTextModel] != (Limits{RPM: 1000, RPD: 10000}) || e.models[DefaultImageModel] != (Limits{RPM: 20, RPD: 250}) {
		t.Errorf("models %v", e.models)
	}
	if e.loc.String() != "America/Los_Angeles" || e.imageScale != DefaultImageScale || e.maxBody != 20<<20 {
		t.Errorf("loc %v scale %v body %d", e.loc, e.imageScale, e.maxBody)
	}
	// Model names may carry the "models/" prefix.
	e = mustNew(t, Config{Models: map[string]Limits{"models/x": {RPM: 1}}})
	if _, ok := e.models["x"]; !ok {
		t.Errorf("models %v", e.models)
	}
	// Another location moves midnight.
	tokyo, err := time.LoadLocation("Asia/Tokyo")
	mustOK(t, err)
	e = mustNew(t, Config{Location: tokyo})
	if e.loc != tokyo {
		t.Error("location not kept")
	}
}

func TestSetFaultsRejectsBadRates(t *testing.T) {
	e := mustNew(t, Config{Keys: []Key{{Name: "k", Secret: "s"}}, Faults: Faults{Rate503: 1}})
	if err := e.SetFaults(Faults{Rate500: 2}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("SetFaults(rate 2) = %v, want ErrInvalidConfig", err)
	}
	// The faults in force did not change.
	if code, _ := rawPost(t, e, genPath, "s", simpleBody); code != 503 {
		t.Fatalf("status %d, want the 503 still injected", code)
	}
}

func TestLayoutString(t *testing.T) {
	for l, want := range map[Layout]string{Layout2025: "2025", Layout2026: "2026", LayoutBare: "bare", LayoutHelpOnly: "help-only", Layout(7): "Layout(7)"} {
		if l.String() != want {
			t.Errorf("%d: %q, want %q", int(l), l.String(), want)
		}
	}
}
