// Our stand-in for github.com/pulumi/pulumi-java in the pulumi-resource-proxmoxve build; see README.md.
// Not upstream code: one function, written here.
module github.com/pulumi/pulumi-java

go 1.25.9

require (
	github.com/hashicorp/hcl/v2 v2.24.0
	github.com/pulumi/pulumi/pkg/v3 v3.246.0
)
