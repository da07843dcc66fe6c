package runtime

import "github.com/gantry-dev/gantry/internal/model"

// NVCFEnvironment is the value of NVCF_ENV in every Gantry instance. NVCF
// puts the name of its own deployment environment there; a Gantry instance
// runs in Gantry, and code that branches on it can tell.
const NVCFEnvironment = "gantry"

// NVCFEnv returns the NVCF_* variables NVCF sets in a function container,
// with Gantry's values, so code written for NVCF finds them where it looks.
// Every runtime sets the same ones, after the function's own
// containerEnvironment, so the platform's values win (NVCF reserves the
// prefix). assetDir and largeOutputDir are the directories the runtime gives
// the instance for input assets and for responses too large to return
// inline; NVCF names per-request directories below them in the NVCF-ASSET-DIR
// and NVCF-LARGE-OUTPUT-DIR request headers. NVCF_MODELS_DIR and
// NVCF_RESOURCES_DIR (Gantry's) name the spec's artifact directories.
func NVCFEnv(spec Spec, assetDir, largeOutputDir string) []model.EnvVar {
	env := []model.EnvVar{
		{Key: "NVCF_FUNCTION_ID", Value: spec.FunctionID},
		{Key: "NVCF_FUNCTION_VERSION_ID", Value: spec.FunctionVersionID},
		{Key: "NVCF_FUNCTION_NAME", Value: spec.FunctionName},
		{Key: "NVCF_NCA_ID", Value: spec.NCAID},
		{Key: "NVCF_BACKEND", Value: spec.Backend},
		{Key: "NVCF_INSTANCETYPE", Value: spec.InstanceType},
		{Key: "NVCF_REGION", Value: spec.Region},
		{Key: "NVCF_ENV", Value: NVCFEnvironment},
		{Key: "NVCF_INSTANCE_ID", Value: spec.InstanceID},
		{Key: "NVCF_ASSET_DIR", Value: assetDir},
		{Key: "NVCF_LARGE_OUTPUT_DIR", Value: largeOutputDir},
	}
	// NVCF's containers find their artifacts at fixed paths; an instance
	// of the process runtime shares the host's file system, so Gantry says
	// where they are.
	if spec.ModelsDir != "" {
		env = append(env, model.EnvVar{Key: "NVCF_MODELS_DIR", Value: spec.ModelsDir})
	}
	if spec.ResourcesDir != "" {
		env = append(env, model.EnvVar{Key: "NVCF_RESOURCES_DIR", Value: spec.ResourcesDir})
	}
	return env
}
