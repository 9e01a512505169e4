package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slideshowd/slideshowd/internal/pipeline"
)

// StatusFile is the name of the small status file in each output folder.
const StatusFile = "status.json"

// outputStatus is the content of DIR/<n>-<slug>/status.json: what the
// folder holds and, for a failed slideshow, why each step failed.
type outputStatus struct {
	Entry     int           `json:"entry"` // 0-based index in the batch file
	ID        string        `json:"id"`    // the job's id (data directory or daemon)
	Source    string        `json:"source"`
	State     string        `json:"state"` // done or failed
	Error     string        `json:"error,omitempty"`
	Attempts  int           `json:"attempts"`
	Analysis  string        `json:"analysis,omitempty"` // file name; absent when the analysis failed
	Images    []outputImage `json:"images"`
	UpdatedAt time.Time     `json:"updated_at"` // the job's last change
}

type outputImage struct {
	N     int    `json:"n"`
	State string `json:"state"`          // done, failed, or pending (never made: the job failed first)
	File  string `json:"file,omitempty"` // when done
	Error string `json:"error,omitempty"`
}

// imageSource reads image n of a finished job: its file name and bytes.
type imageSource func(n int) (name string, data []byte, err error)

// writeSlideshow writes a finished job's folder dir (analysis.json, its
// done images, status.json) so that it appears whole or not at all: the
// files go to a hidden temporary folder beside it, each fsynced, then the
// folder is renamed into place and its parent fsynced. A folder of an
// earlier run is replaced (renamed aside, then removed).
func writeSlideshow(dir string, entry int, st pipeline.Status, image imageSource) error {
	parent, name := filepath.Dir(dir), filepath.Base(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return err
	}
	tmp := filepath.Join(parent, "."+name+".tmp")
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	out := outputStatus{Entry: entry, ID: st.ID, Source: st.Source, State: string(st.State), Error: st.Error,
		Attempts: st.Attempts, UpdatedAt: st.UpdatedAt, Images: []outputImage{}}
	if st.Analysis != nil {
		data, err := json.MarshalIndent(st.Analysis, "", "  ")
		if err != nil {
			return err
		}
		if err := writeFile(tmp, pipeline.AnalysisFile, append(data, '\n')); err != nil {
			return err
		}
		out.Analysis = pipeline.AnalysisFile
	}
	for _, is := range st.Images {
		oi := outputImage{N: is.N, State: string(is.State), Error: is.Error}
		if is.State == pipeline.ImageDone {
			file, data, err := image(is.N)
			if err != nil {
				return fmt.Errorf("image %d: %w", is.N, err)
			}
			if err := writeFile(tmp, file, data); err != nil {
				return err
			}
			oi.File = file
		}
		out.Images = append(out.Images, oi)
	}
	data, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFile(tmp, StatusFile, append(data, '\n')); err != nil {
		return err
	}
	if err := replaceDir(tmp, dir); err != nil {
		return err
	}
	ok = true
	return syncDir(parent)
}

// replaceDir renames folder tmp to dir; an existing dir is renamed aside
// first and removed after.
func replaceDir(tmp, dir string) error {
	err := os.Rename(tmp, dir)
	if err == nil {
		return nil
	}
	if _, serr := os.Stat(dir); serr != nil {
		return err
	}
	old := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".old")
	if err := os.RemoveAll(old); err != nil {
		return err
	}
	if err := os.Rename(dir, old); err != nil {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
