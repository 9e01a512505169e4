//go:build unix

package store

import (
	"fmt"
	"os"
	"syscall"
)

// fileID identifies the file at path: its device and inode numbers ("" when
// they cannot be read). A copy of a file is another file (another inode);
// the file renamed or linked elsewhere on its file system is the same.
func fileID(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}
