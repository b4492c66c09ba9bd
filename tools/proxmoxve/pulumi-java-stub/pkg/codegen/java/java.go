// Package java stands in for github.com/pulumi/pulumi-java/pkg/codegen/java in our build of
// pulumi-resource-proxmoxve (tools/toolchain.sh). It is ours, not pulumi-java's code.
//
// pulumi-terraform-bridge v3.133.0 imports this package in two places, both for turning the
// Terraform docs' HCL examples into Java while it generates a provider's schema:
// pkg/tfgen/convert_cli.go and pkg/tf2pulumi/convert/convert.go. The plugin embeds its schema
// (schema-embed.json) and never generates one at run time, so this function is never called.
// The Go module proxy does not serve github.com/pulumi/pulumi-java, and the bridge's module
// graph needs the package, hence this stand-in. See ../../../README.md.
package java

import (
	"errors"

	"github.com/hashicorp/hcl/v2"
	"github.com/pulumi/pulumi/pkg/v3/codegen/pcl"
)

// GenerateProgram has the signature the bridge calls and always fails: this build cannot
// convert programs to Java.
func GenerateProgram(program *pcl.Program) (map[string][]byte, hcl.Diagnostics, error) {
	return nil, nil, errors.New("Java program generation is not part of this build of the provider " +
		"(haproxy-ha tools/pulumi-java-stub)")
}
