package validate

import (
	"testing"

	"github.com/gantry-dev/gantry/internal/model"
)

func TestAutoscalingRules(t *testing.T) {
	t.Parallel()
	up := func(f float64, th int, st *model.Stickiness) *model.AutoscalingConfiguration {
		return &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Factor: f, Threshold: th, Stickiness: st}}
	}
	down := func(f float64, th int) *model.AutoscalingConfiguration {
		return &model.AutoscalingConfiguration{ScaleDown: &model.ScalingDetails{Factor: f, Threshold: th}}
	}
	tests := []struct {
		name   string
		policy model.AutoscalingPolicy
		conf   *model.AutoscalingConfiguration
		err    string // "" when valid
	}{
		{"platform defaults", "", nil, ""},
		{"platform, said", model.AutoscalingPlatform, nil, ""},
		{"custom up and down", model.AutoscalingCustom, &model.AutoscalingConfiguration{
			ScaleUp: &model.ScalingDetails{Factor: 2, Threshold: 80}, ScaleDown: &model.ScalingDetails{Factor: 0.5, Threshold: 20}}, ""},
		{"a configuration without a policy is custom", "", up(1.5, 70, nil), ""},
		{"stickiness", "", up(2, 80, &model.Stickiness{Size: "PT30M", Threshold: "PT5M"}), ""},
		{"unknown policy", "AUTOMATIC", nil, `autoscalingConfigurationPolicy "AUTOMATIC" is invalid`},
		{"custom without a configuration", model.AutoscalingCustom, nil, "needs an autoscalingConfiguration"},
		{"platform with a configuration", model.AutoscalingPlatform, up(2, 80, nil), "autoscalingConfigurationPolicy is PLATFORM_CONFIGURATION"},
		{"empty configuration", model.AutoscalingCustom, &model.AutoscalingConfiguration{}, "autoscalingConfiguration is empty"},
		{"scale-up factor 1", "", up(1, 80, nil), "scaleUpDetails.factor 1 is invalid"},
		{"scale-down factor 1", "", down(1, 20), "scaleDownDetails.factor 1 is invalid"},
		{"scale-down factor 0", "", down(0, 20), "scaleDownDetails.factor 0 is invalid"},
		{"threshold over 100", "", up(2, 101, nil), "scaleUpDetails.threshold 101 is invalid: it is a utilization percentage, 0-100"},
		{"negative threshold", "", down(0.5, -1), "scaleDownDetails.threshold -1 is invalid"},
		{"stickiness over an hour", "", up(2, 80, &model.Stickiness{Size: "PT2H", Threshold: "PT5M"}), `stickiness.size "PT2H" is invalid: use more than PT0S and at most PT1H`},
		{"stickiness threshold not below size", "", up(2, 80, &model.Stickiness{Size: "PT5M", Threshold: "PT5M"}), `stickiness.threshold "PT5M" is invalid: it must be shorter than stickiness.size "PT5M"`},
		{"stickiness not a duration", "", up(2, 80, &model.Stickiness{Size: "5m", Threshold: "PT1M"}), `stickiness.size "5m" is invalid`},
		{"metric", "", &model.AutoscalingConfiguration{ScaleUp: &model.ScalingDetails{Metric: "gpu", Factor: 2, Threshold: 80}}, `metric "gpu" is not supported`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := validSpec()
			s.AutoscalingPolicy, s.Autoscaling = tc.policy, tc.conf
			err := Deployment(&model.DeploymentRequest{Specs: []model.GPUSpec{s}})
			if tc.err == "" {
				if err != nil {
					t.Fatalf("valid autoscaling refused: %v", err)
				}
				return
			}
			wantProblem(t, err, 400, tc.err)
		})
	}
}
