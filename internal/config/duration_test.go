package config

import (
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

func TestDuration_UnmarshalYAML(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{in: "300ms", want: 300 * time.Millisecond},
		{in: "1.5s", want: 1500 * time.Millisecond},
		{in: `"2m"`, want: 2 * time.Minute},
		{in: "1h2m3s", want: time.Hour + 2*time.Minute + 3*time.Second},
		{in: "0s", want: 0},
		{in: "3x", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: invalid duration "3x"`},
		{in: "5", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: invalid duration "5": missing unit (e.g. "5s")`},
		{in: "0", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: invalid duration "0": missing unit (e.g. "0s")`},
		{in: "1.5", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: invalid duration "1.5": missing unit (e.g. "1.5s")`},
		{in: "-1s", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: invalid duration "-1s": must not be negative`},
		{in: "[1s]", wantErr: `yaml: unmarshal errors:` + "\n" + `  line 1: must be a duration, e.g. "1.5s"`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := yaml.Unmarshal([]byte(tt.in), &d)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("Unmarshal(%s) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Unmarshal(%s): %v", tt.in, err)
			}
			if d.D() != tt.want {
				t.Errorf("Unmarshal(%s) = %v, want %v", tt.in, d.D(), tt.want)
			}
		})
	}
}

func TestDuration_MarshalYAML(t *testing.T) {
	b, err := yaml.Marshal(struct{ D Duration }{Duration(1500 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), "d: 1.5s\n"; got != want {
		t.Errorf("Marshal = %q, want %q", got, want)
	}
}
