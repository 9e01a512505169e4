package store

import (
	"fmt"
	"os"
	"strings"
	"syscall"
)

// fileID identifies the file at path on this machine as booted: the
// kernel's boot id and the file's device and inode numbers ("" when one
// cannot be read). A copy of a file is another file (another inode); the
// file renamed or linked elsewhere on its file system is the same; a file
// with the same numbers on another machine, or a clone of this machine's
// disk, is read under another boot id (a new boot of this machine too: it
// then reads as another file, the safe side).
func fileID(path string) string {
	boot, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil || len(strings.TrimSpace(string(boot))) == 0 {
		return ""
	}
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return ""
	}
	return fmt.Sprintf("%s:%d:%d", strings.TrimSpace(string(boot)), st.Dev, st.Ino)
}
