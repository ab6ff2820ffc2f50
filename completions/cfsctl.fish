# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_cfsctl_global_optspecs
    string join \n v/verbose repo= json h/help V/version
end

function __fish_cfsctl_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_cfsctl_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_cfsctl_using_subcommand
    set -l cmd (__fish_cfsctl_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c cfsctl -n "__fish_cfsctl_needs_command" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_needs_command" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "create-image" -d 'Write a composefs image of a directory or dump file (mkcomposefs-compatible)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "compute-id" -d 'Print the fs-verity digest of the image a source would give, writing nothing'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "dump" -d 'Print a composefs image as a composefs-dump(5) file'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "init" -d 'Create an empty repository'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "mount" -d 'Mount an image (a file, or a digest or ref in the repository) read-only'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "gc" -d 'Remove objects no ref reaches, and stale temporary files'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "fsck" -d 'Check every object, image, ref and link; exit status 1 on any problem'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "oci" -d 'OCI container images: pull, list, inspect, mount, compute-id, seal'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "install" -d 'Install a bootable image onto a root filesystem and ESP, or as a raw disk image'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "upgrade" -d 'Pull the booted deployment\'s image again and stage it if it changed (exit 77: none)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "switch" -d 'Stage the image of another reference, and follow it from now on (exit 77: no change)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "rollback" -d 'Make the previous deployment the next boot (again: undo)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "status" -d 'Show the deployments, which boots next, boot counting and host facts'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "pin" -d 'Keep a deployment whatever the `keep` setting says'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "unpin" -d 'Let pruning remove a pinned deployment again'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "finalize" -d 'Apply the staged deployment: /etc merge and boot order (run at shutdown)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "etc" -d '/etc of the host against its image'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "health-check" -d 'Check that the booted system is the verified image (run before boot-complete.target)'
complete -c cfsctl -n "__fish_cfsctl_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l min-version -d 'Lowest EROFS format version to write' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l max-version -d 'Highest format version to write when the content needs it (e.g. whiteouts)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l threads -d 'Threads hashing file contents (0, the default: all cores; at most 1024)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l digest-store -d 'Copy file contents into this mkcomposefs-style object directory (`XX/rest-of-digest`)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l repo -d 'Store file contents and the image in this repository (`images/<digest>`)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l ref -d 'Also point this ref (e.g. `local/myimage`) at the image: refs are what `cfsctl gc` keeps, an image without one is collected' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l from-dump -l from-file -d 'SOURCE is a composefs-dump(5) file (`-` for standard input), not a directory'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l strict -d 'Refuse dump files mkcomposefs accepts only leniently (as with CFS_PARSE_STRICT=1)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l use-epoch -d 'Set every modification time to 0'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l skip-devices -d 'Leave out device nodes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l skip-xattrs -d 'Leave out all extended attributes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l user-xattrs -d 'Keep only `user.*` extended attributes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l mkcomposefs-compat -d 'Behave exactly like C mkcomposefs 1.0.8 on directories: one inode per name (hard links not detected) and sockets kept, giving byte-identical images'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l oci -d 'Build the image `oci pull` builds from the same image\'s layers: SOURCE is its root filesystem unpacked (or `/` in a container build); hard links are folded and the canonicalization of docs/oci-conventions.md applied (root takes /usr\'s metadata, /run emptied, only security.capability xattrs, sockets and whiteouts removed)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l no-cache -d 'With --repo: neither use nor update the repository\'s stat cache (every file is read and hashed again, even if unchanged since the last import)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l print-digest -d 'Print the image\'s fs-verity digest'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l print-digest-only -d 'Print the digest and write no image file'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -l json -d 'Print the result as JSON: the digest, the image file and ref written, and with --repo what the import stored'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand create-image" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l min-version -d 'Lowest EROFS format version to write' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l max-version -d 'Highest format version to write when the content needs it (e.g. whiteouts)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l threads -d 'Threads hashing file contents (0, the default: all cores; at most 1024)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l algorithm -d 'fs-verity hash algorithm of the digests' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l from-dump -l from-file -d 'SOURCE is a composefs-dump(5) file (`-` for standard input), not a directory'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l strict -d 'Refuse dump files mkcomposefs accepts only leniently (as with CFS_PARSE_STRICT=1)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l use-epoch -d 'Set every modification time to 0'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l skip-devices -d 'Leave out device nodes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l skip-xattrs -d 'Leave out all extended attributes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l user-xattrs -d 'Keep only `user.*` extended attributes'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l mkcomposefs-compat -d 'Behave exactly like C mkcomposefs 1.0.8 on directories: one inode per name (hard links not detected) and sockets kept, giving byte-identical images'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l oci -d 'Build the image `oci pull` builds from the same image\'s layers: SOURCE is its root filesystem unpacked (or `/` in a container build); hard links are folded and the canonicalization of docs/oci-conventions.md applied (root takes /usr\'s metadata, /run emptied, only security.capability xattrs, sockets and whiteouts removed)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -l json -d 'Print the result as JSON (`{"digest": HEX}`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand compute-id" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand dump" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand dump" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand dump" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand dump" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand dump" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -l algorithm -d 'fs-verity hash algorithm naming every object and image' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand init" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -l digest -d 'Refuse to mount unless the image\'s fs-verity digest is this (hex)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -l allow-setuid-devices -d 'Let setuid/setgid bits and device nodes in the image take effect (by default the mount is nosuid,nodev: an image from elsewhere must not give anyone root)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand mount" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -l sysroot -d 'Also the deployments of the mounted target whose physical root is DIR (its repository is used)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -l esp -d 'The target\'s ESP' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -s n -l dry-run -d 'Report what would be removed; remove nothing'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -l no-wait -d 'Fail at once if another process has the repository open, instead of waiting'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -l json -d 'Print the report as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand gc" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l threads -d 'Threads hashing objects (0, the default: all cores; at most 1024)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l sysroot -d 'Also the deployments of the mounted target whose physical root is DIR (its repository is used)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l esp -d 'The target\'s ESP' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l json -d 'Print the report as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -l metadata-only -d 'Do not read objects; check links, refs, images and object lists only'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand fsck" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "pull" -d 'Pull an image into the repository and tag it; prints the composefs image digest'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "images" -d 'List the tagged images'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "inspect" -d 'Show what the repository knows about a tagged image'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "rm" -d 'Remove a tag; the next `cfsctl gc` frees what no other tag needs'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "mount" -d 'Mount a tagged image read-only'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "compute-id" -d 'Print the composefs digest of an image without tagging it'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "seal" -d 'Write a copy of an image whose manifest carries its composefs digests (the composefs OCI sealing specification\'s inline annotations)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and not __fish_seen_subcommand_from pull images inspect rm mount compute-id seal help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l tls-verify -d 'Verify registry TLS certificates (`--tls-verify=false` for a local registry)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l tag -d 'Tag name (default: the reference as written)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l verity-cert -d 'Require fs-verity signatures (`oci seal --sign-key`) on the sealed digests, made by the key of this certificate (PEM or DER; repeat for several). Implies a sealed image' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l require-sealed -d 'Refuse images without the merged and config composefs digests (`oci seal`): inline annotations, or a composefs artifact referring to the image (`oci seal --artifact`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l kernel-signature -d 'Also enable fs-verity on the merged image with its signature, so the kernel checks it against its .fs-verity keyring (the certificate must be loaded there: `keyctl padd asymmetric \'\' %keyring:.fs-verity < cert.der`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -l json -d 'Print the result as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from pull" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from images" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from images" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from images" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from images" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from images" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from inspect" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from inspect" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from inspect" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from inspect" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from inspect" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from rm" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from rm" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from rm" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from rm" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from rm" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -l allow-setuid-devices -d 'Let setuid/setgid bits and device nodes in the image take effect (by default the mount is nosuid,nodev: an image from elsewhere must not give anyone root)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from mount" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l repo -d 'Repository to import into (nothing is tagged: a later pull writes fewer objects, until a `gc` removes them); default: a temporary one' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l tls-verify -d 'Verify registry TLS certificates (`--tls-verify=false` for a local registry)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -l bootable -d 'Print the digest of the boot variant (`/boot` and `/sysroot` emptied, as bootc mounts it) instead'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from compute-id" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l repo -d 'Repository to import into; default: a temporary one' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l tls-verify -d 'Verify registry TLS certificates (`--tls-verify=false` for a local registry)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l algorithm -d 'fs-verity algorithm of the published digests (repeat or comma-separate for both); default: the repository\'s (sha256 for a temporary one)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l sign-key -d 'Sign every digest published with this private key (PEM or DER): PKCS#7 over the kernel\'s fsverity_formatted_digest, as `fsverity sign` does. Needs --sign-cert' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l sign-cert -d 'The certificate of --sign-key (PEM or DER)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l bootable -d 'Publish the boot variant\'s digest (default: when the config has containers.bootc=1)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l no-bootable -d 'Do not publish the boot variant\'s digest'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -l artifact -d 'Artifact mode: leave the image untouched and write the digests (and signatures) as an OCI artifact referring to it, next to it (registry: pushed by digest and listed under the referrers tag sha256-<hex>; oci: layout: an untagged index entry)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from seal" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "pull" -d 'Pull an image into the repository and tag it; prints the composefs image digest'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "images" -d 'List the tagged images'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "inspect" -d 'Show what the repository knows about a tagged image'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "rm" -d 'Remove a tag; the next `cfsctl gc` frees what no other tag needs'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "mount" -d 'Mount a tagged image read-only'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "compute-id" -d 'Print the composefs digest of an image without tagging it'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "seal" -d 'Write a copy of an image whose manifest carries its composefs digests (the composefs OCI sealing specification\'s inline annotations)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand oci; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l repo -d 'Repository directory' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l tls-verify -d 'Verify registry TLS certificates (`--tls-verify=false` for a local registry)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l sysroot -d 'The target\'s physical root filesystem (gets composefs/ and state/)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l esp -d 'The target\'s ESP, for --sysroot (gets EFI/, loader/, cfsctl/)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l to-disk -d 'Write a raw GPT disk image (ESP + ext4 root with the verity feature) instead' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l size -d 'Size of the disk image: bytes, or with a K/M/G suffix' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l karg -d 'Extra kernel argument (repeatable); --sysroot installs need at least root=... here' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l target-imgref -d 'The reference `cfsctl upgrade` pulls on the installed host (default: the image reference installed), e.g. the registry as the host will reach it' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l bootloader -d 'systemd-boot EFI binary, when the image does not ship one' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -l json -d 'Print the result as JSON (keys in camelCase, as `status --json`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand install" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l etc-conflict -d 'What to do when /etc changed locally and in the new image (default: the config\'s etc-conflict, refuse)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l tls-verify -d 'Verify registry TLS certificates (default: the config\'s tls-verify, true)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l check -d 'Only fetch the manifest and say what would change; write nothing'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l download-only -d 'Download and record the update, but do not make it the next boot until `cfsctl upgrade` (or `--apply`) runs again'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l apply -d 'Reboot into the update (on a --sysroot target: finalize it now)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l auto -d 'Do what the config\'s auto-update says (none, check, stage, apply): what cfsctl-upgrade.service runs'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -l json -d 'Print the result as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand upgrade" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l etc-conflict -d 'What to do when /etc changed locally and in the new image (default: the config\'s etc-conflict, refuse)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l tls-verify -d 'Verify registry TLS certificates (default: the config\'s tls-verify, true)' -r -f -a "true\t''
false\t''"
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l signature-policy -d 'The containers-policy.json(5) file the image must satisfy (default: ~/.config/containers/policy.json if it exists, else /etc/containers/policy.json)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l registries.d -d 'The containers-registries.d(5) directory saying where signatures are (default: ~/.config/containers/registries.d if it exists, else /etc/containers/registries.d)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l check -d 'Only fetch the manifest and say what would change; write nothing'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l download-only -d 'Download and record the update, but do not make it the next boot until `cfsctl upgrade` (or `--apply`) runs again'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l apply -d 'Reboot into the update (on a --sysroot target: finalize it now)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l auto -d 'Do what the config\'s auto-update says (none, check, stage, apply): what cfsctl-upgrade.service runs'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -l json -d 'Print the result as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand switch" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l apply -d 'Reboot into it'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -l json -d 'Print the result as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand rollback" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -l json -d 'Print JSON (schema: docs/lifecycle.md)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand status" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -l json -d 'Print the result as JSON (`{"id": HEX, "pinned": BOOL}`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand pin" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -l json -d 'Print the result as JSON (`{"id": HEX, "pinned": BOOL}`)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand unpin" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -l json -d 'Print the result as JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand finalize" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -l json -d 'Print the result as JSON, for the commands that report one'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -f -a "diff" -d 'What the host changed in /etc against the image it booted'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and not __fish_seen_subcommand_from diff help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l sysroot -d 'Work on a mounted target whose physical root is DIR, not the booted host' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l esp -d 'The ESP (default on a booted host: the partition systemd-boot was loaded from)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l config -d 'Lifecycle settings (default on a booted host: /etc/cfsctl/config.toml)' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l deployment -d 'The deployment (default: the booted one, or the default one on a target)' -r
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from diff" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from help" -f -a "diff" -d 'What the host changed in /etc against the image it booted'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand etc; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand health-check" -l repo -d 'Repository directory, for the commands that use one [default: $CFSCTL_REPO, else /sysroot/composefs]' -r -F
complete -c cfsctl -n "__fish_cfsctl_using_subcommand health-check" -l json -d 'Print JSON'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand health-check" -s v -l verbose -d 'More log output (repeat for debug); RUST_LOG overrides'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand health-check" -s h -l help -d 'Print help'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand health-check" -s V -l version -d 'Print version'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "create-image" -d 'Write a composefs image of a directory or dump file (mkcomposefs-compatible)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "compute-id" -d 'Print the fs-verity digest of the image a source would give, writing nothing'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "dump" -d 'Print a composefs image as a composefs-dump(5) file'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "init" -d 'Create an empty repository'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "mount" -d 'Mount an image (a file, or a digest or ref in the repository) read-only'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "gc" -d 'Remove objects no ref reaches, and stale temporary files'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "fsck" -d 'Check every object, image, ref and link; exit status 1 on any problem'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "oci" -d 'OCI container images: pull, list, inspect, mount, compute-id, seal'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "install" -d 'Install a bootable image onto a root filesystem and ESP, or as a raw disk image'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "upgrade" -d 'Pull the booted deployment\'s image again and stage it if it changed (exit 77: none)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "switch" -d 'Stage the image of another reference, and follow it from now on (exit 77: no change)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "rollback" -d 'Make the previous deployment the next boot (again: undo)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "status" -d 'Show the deployments, which boots next, boot counting and host facts'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "pin" -d 'Keep a deployment whatever the `keep` setting says'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "unpin" -d 'Let pruning remove a pinned deployment again'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "finalize" -d 'Apply the staged deployment: /etc merge and boot order (run at shutdown)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "etc" -d '/etc of the host against its image'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "health-check" -d 'Check that the booted system is the verified image (run before boot-complete.target)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and not __fish_seen_subcommand_from create-image compute-id dump init mount gc fsck oci install upgrade switch rollback status pin unpin finalize etc health-check help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "pull" -d 'Pull an image into the repository and tag it; prints the composefs image digest'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "images" -d 'List the tagged images'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "inspect" -d 'Show what the repository knows about a tagged image'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "rm" -d 'Remove a tag; the next `cfsctl gc` frees what no other tag needs'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "mount" -d 'Mount a tagged image read-only'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "compute-id" -d 'Print the composefs digest of an image without tagging it'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from oci" -f -a "seal" -d 'Write a copy of an image whose manifest carries its composefs digests (the composefs OCI sealing specification\'s inline annotations)'
complete -c cfsctl -n "__fish_cfsctl_using_subcommand help; and __fish_seen_subcommand_from etc" -f -a "diff" -d 'What the host changed in /etc against the image it booted'
