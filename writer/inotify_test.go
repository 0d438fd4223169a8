package writer

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func TestReadInotifyLimits(t *testing.T) {
	write := func(dir, instances, watches string) {
		for name, v := range map[string]string{"max_user_instances": instances, "max_user_watches": watches} {
			if v == "" {
				continue
			}
			if err := os.WriteFile(filepath.Join(dir, name), []byte(v), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name, instances, watches string
		want                     InotifyLimits
		wantErr                  string
	}{
		{"as /proc shows them", "128\n", "65536\n", InotifyLimits{Instances: 128, Watches: 65536}, ""},
		{"missing", "128\n", "", InotifyLimits{}, "max_user_watches"},
		{"not a count", "lots\n", "1", InotifyLimits{}, `max_user_instances: "lots" is not a count`},
		{"negative", "-1", "1", InotifyLimits{}, "is not a count"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			write(dir, tc.instances, tc.watches)
			got, err := ReadInotifyLimits(dir)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if runtime.GOOS == "linux" {
		if l, err := ReadInotifyLimits(InotifySysctlDir); err != nil || l.Instances <= 0 || l.Watches <= 0 {
			t.Errorf("this machine's limits: %+v, %v", l, err)
		}
	}
}
