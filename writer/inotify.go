package writer

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// InotifyLimits are the sysctls that bound what Envoy may watch. Every
// file subscription of Envoy's is an inotify instance of its own with one
// watch on the file's folder (Envoy rule 12); both limits count per user
// on the node (all processes of Envoy's uid, every container of it on a
// node included: the sysctls are not namespaced). When Envoy cannot make
// an instance it aborts (a RELEASE_ASSERT in its watcher's constructor).
type InotifyLimits struct {
	Instances int // fs.inotify.max_user_instances
	Watches   int // fs.inotify.max_user_watches
}

// InotifySysctlDir is where Linux shows the inotify sysctls.
const InotifySysctlDir = "/proc/sys/fs/inotify"

// ReadInotifyLimits reads the limits from dir (InotifySysctlDir, or a
// folder of the same files in tests).
func ReadInotifyLimits(dir string) (InotifyLimits, error) {
	var l InotifyLimits
	for _, s := range []struct {
		name string
		to   *int
	}{{"max_user_instances", &l.Instances}, {"max_user_watches", &l.Watches}} {
		data, err := os.ReadFile(filepath.Join(dir, s.name))
		if err != nil {
			return InotifyLimits{}, fmt.Errorf("inotify limits: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil || n < 0 {
			return InotifyLimits{}, fmt.Errorf("inotify limits: %s: %q is not a count", s.name, strings.TrimSpace(string(data)))
		}
		*s.to = n
	}
	return l, nil
}
