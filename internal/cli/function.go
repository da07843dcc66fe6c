package cli

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"github.com/gantry-dev/gantry/internal/model"
)

// maxSecretBytes is NVCF's limit on one secret value.
const maxSecretBytes = 32768

func newFunctionCmd(opts *rootOptions) *cobra.Command {
	cmd := groupCmd("function", "Create, list, inspect and delete functions and their versions", "functions", "fn")
	cmd.AddCommand(
		newFunctionCreateCmd(opts),
		newFunctionListCmd(opts),
		newFunctionGetCmd(opts),
		newFunctionDeleteCmd(opts),
	)
	return cmd
}

// functionCreateOptions are the flags of `gantry function create`.
type functionCreateOptions struct {
	file          string
	functionID    string
	name          string
	image         string
	args          string
	inferenceURL  string
	inferencePort int
	healthURI     string
	env           []string
	tags          []string
	description   string
	functionType  string
	secretFiles   []string
}

func newFunctionCreateCmd(opts *rootOptions) *cobra.Command {
	var o functionCreateOptions
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create a function, or a new version of one with --function-id",
		Long: `Create a function with its first version, or with --function-id add a version
to an existing function.

The body is built from the flags, or from -f with a full NVCF create-function
request (JSON or YAML; - reads stdin) whose fields the flags then override.
--env and --secret-file set single keys and keep the file's other entries;
every other flag replaces the field.

Secrets: --secret-file NAME=PATH reads the value from PATH (one trailing
newline is dropped), so a secret never appears in shell history or in the
process list the way a flag value would. The values are sent to the server's
secret store and are never printed or returned.`,
		Example: `  gantry function create --name echo --image process://gantry --args "example echo" --health-uri /health
  gantry function create -f function.json --name echo-v2
  gantry function create --function-id <id> --name echo --image process://gantry --secret-file API_KEY=./api-key.txt`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			req, err := o.request(cmd)
			if err != nil {
				return err
			}
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			var fn model.Function
			if o.functionID != "" {
				fn, err = c.CreateVersion(cmd.Context(), o.functionID, req)
			} else {
				fn, err = c.CreateFunction(cmd.Context(), req)
			}
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			return p.print(fn, func() table { return functionTable([]model.Function{fn}, p.now) })
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.file, "file", "f", "", "NVCF create-function request body (JSON or YAML; - for stdin); flags override its fields")
	f.StringVar(&o.functionID, "function-id", "", "add a new version to this existing function instead of creating one")
	f.StringVar(&o.name, "name", "", "function name (letters, digits, _ and -)")
	f.StringVar(&o.image, "image", "", "container image, e.g. nvcr.io/org/app:1.0 or process://gantry")
	f.StringVar(&o.args, "args", "", "container arguments, as one string")
	f.StringVar(&o.inferenceURL, "inference-url", "/", "path the platform sends invocations to")
	f.IntVar(&o.inferencePort, "inference-port", 0, "port the container serves inference on")
	f.StringVar(&o.healthURI, "health-uri", "", "HTTP path that answers 200 when an instance is ready")
	f.StringArrayVar(&o.env, "env", nil, "container environment variable KEY=VALUE (repeatable)")
	f.StringArrayVar(&o.tags, "tag", nil, "tag (repeatable)")
	f.StringVar(&o.description, "description", "", "description")
	f.StringVar(&o.functionType, "function-type", "", "DEFAULT, STREAMING or LLM")
	f.StringArrayVar(&o.secretFiles, "secret-file", nil, "secret NAME=PATH whose value is read from the file PATH (repeatable)")
	return cmd
}

// request builds the create-function body from -f and the flags that were set.
func (o *functionCreateOptions) request(cmd *cobra.Command) (model.CreateFunctionRequest, error) {
	var req model.CreateFunctionRequest
	if o.file != "" {
		data, err := readFileOrStdin(cmd, o.file)
		if err != nil {
			return req, fmt.Errorf("-f: %w", err)
		}
		if err := yaml.UnmarshalStrict(data, &req); err != nil {
			return req, withHint(fmt.Errorf("-f %s: %w", o.file, err),
				"the file must be an NVCF create-function request body (name, inferenceUrl, containerImage, ...)")
		}
	}
	changed := cmd.Flags().Changed
	if changed("name") {
		req.Name = o.name
	}
	if changed("image") {
		req.ContainerImage = o.image
	}
	if changed("args") {
		req.ContainerArgs = o.args
	}
	if changed("inference-url") || req.InferenceURL == "" {
		req.InferenceURL = o.inferenceURL
	}
	if changed("inference-port") {
		req.InferencePort = o.inferencePort
	}
	if changed("health-uri") {
		if req.Health == nil {
			req.Health = &model.Health{}
		}
		req.Health.URI = o.healthURI
		if req.Health.Protocol == "" {
			req.Health.Protocol = "HTTP"
		}
	}
	if changed("description") {
		req.Description = o.description
	}
	if changed("function-type") {
		req.FunctionType = strings.ToUpper(o.functionType)
	}
	if changed("tag") {
		req.Tags = o.tags
	}
	for _, kv := range o.env {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return req, usageErrorf(cmd, "--env %q: want KEY=VALUE", kv)
		}
		req.ContainerEnvironment = setEnv(req.ContainerEnvironment, k, v)
	}
	for _, np := range o.secretFiles {
		name, path, ok := strings.Cut(np, "=")
		if !ok || name == "" || path == "" {
			return req, usageErrorf(cmd, "--secret-file %q: want NAME=PATH", np)
		}
		val, err := readSecretFile(path)
		if err != nil {
			return req, fmt.Errorf("--secret-file %s: %w", name, err)
		}
		req.Secrets = setSecret(req.Secrets, name, val)
	}

	if req.Name == "" {
		return req, usageErrorf(cmd, "--name is required (or name in the -f file)")
	}
	if req.ContainerImage == "" && req.HelmChart == "" && len(req.Models) == 0 {
		// A file with helmChart or models only goes to the server, which
		// says why it refuses them.
		return req, usageErrorf(cmd, "--image is required (or containerImage in the -f file): a container image, or process://<program>")
	}
	return req, nil
}

func setEnv(env []model.EnvVar, k, v string) []model.EnvVar {
	for i := range env {
		if env[i].Key == k {
			env[i].Value = v
			return env
		}
	}
	return append(env, model.EnvVar{Key: k, Value: v})
}

func setSecret(secrets []model.Secret, name, v string) []model.Secret {
	for i := range secrets {
		if secrets[i].Name == name {
			secrets[i].Value = v
			return secrets
		}
	}
	return append(secrets, model.Secret{Name: name, Value: v})
}

// readSecretFile returns a secret's value without one trailing newline, as
// left by `echo value > file`. The error never includes the content.
func readSecretFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSecretBytes+3))
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	data = bytes.TrimSuffix(data, []byte("\n"))
	data = bytes.TrimSuffix(data, []byte("\r"))
	if len(data) > maxSecretBytes {
		return "", fmt.Errorf("%s is larger than the %d-byte limit for a secret value", path, maxSecretBytes)
	}
	return string(data), nil
}

// readFileOrStdin reads path, or the command's stdin for "-".
func readFileOrStdin(cmd *cobra.Command, path string) ([]byte, error) {
	if path == "-" {
		return io.ReadAll(cmd.InOrStdin())
	}
	return os.ReadFile(path)
}

func newFunctionListCmd(opts *rootOptions) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List every version of every function",
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			fns, err := c.ListFunctions(cmd.Context())
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			return p.print(nonNil(fns), func() table { return functionTable(fns, p.now) })
		},
	}
}

func newFunctionGetCmd(opts *rootOptions) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:   "get <functionId>",
		Short: "Show one function version, or list a function's versions",
		Args:  exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			p := opts.printer(cmd)
			if version != "" {
				fn, err := c.GetFunction(cmd.Context(), args[0], version)
				if err != nil {
					return err
				}
				return p.print(fn, func() table { return functionTable([]model.Function{fn}, p.now) })
			}
			fns, err := c.ListVersions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return p.print(nonNil(fns), func() table { return functionTable(fns, p.now) })
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "function version id (default: list all versions)")
	return cmd
}

// deletedVersion is the -o json/yaml result of a delete.
type deletedVersion struct {
	FunctionID string `json:"functionId"`
	VersionID  string `json:"versionId"`
	Deleted    bool   `json:"deleted"`
}

func newFunctionDeleteCmd(opts *rootOptions) *cobra.Command {
	var version string
	cmd := &cobra.Command{
		Use:     "delete <functionId> --version <versionId>",
		Aliases: []string{"rm"},
		Short:   "Delete one function version",
		Long:    "Delete one function version. Undeploy it first with `gantry deploy delete`.",
		Args:    exactArgs("<functionId>"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if version == "" {
				return withHint(fmt.Errorf("--version is required: delete removes one version"),
					"list the versions with `gantry function get %s`", args[0])
			}
			c, err := opts.client(cmd, true)
			if err != nil {
				return err
			}
			if err := c.DeleteVersion(cmd.Context(), args[0], version); err != nil {
				return err
			}
			return opts.printer(cmd).printMessage(deletedVersion{args[0], version, true},
				"Deleted function %s version %s", args[0], version)
		},
	}
	cmd.Flags().StringVar(&version, "version", "", "function version id (required)")
	return cmd
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
