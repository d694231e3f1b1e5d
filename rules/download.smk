# The real datasets and weights: download (resumable, verified against evseg/fetch/manifest.yaml) and unpack
# into dsec.root, cityscapes.root and the checkpoint paths of the config (only with download.enabled).
# Weights behind Google Drive / OneDrive links are placed by hand: rule place_by_hand says where from.
#
# These rules only produce what is missing (missing() in the wildcard constraints): a dataset or weights file
# that is present is an input like any other, so -F / -R never delete and fetch 300 GB again, nor delete a
# file that was placed by hand.


if config["download"]["enabled"]:

    rule download:
        output:
            archive(f"{DOWNLOADS}/{{name}}"),
        log:
            f"{DOWNLOADS}/logs/{{name}}.log",
        wildcard_constraints:
            name=alternatives(download_entries()),
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("download")["threads"]
        resources:
            mem_mb=resources_of("download")["mem_mb"],
            runtime=resources_of("download")["runtime"],
            gpu=resources_of("download")["gpu"],
        params:
            entry=lambda wildcards: download_entries()[wildcards.name],
        script:
            "../stages/download.py"

    rule download_weights:
        output:
            "{checkpoint}",
        log:
            f"{DOWNLOADS}/logs/weights/{{checkpoint}}.log",
        wildcard_constraints:
            checkpoint=alternatives(missing(weights(checkpoint_paths()))),
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("download")["threads"]
        resources:
            mem_mb=resources_of("download")["mem_mb"],
            runtime=resources_of("download")["runtime"],
            gpu=resources_of("download")["gpu"],
        params:
            entry=weights_entry,
        script:
            "../stages/download.py"

    rule unpack_dsec_labels:
        input:
            archives=f"{DOWNLOADS}/dsec/{{split}}_semantic_segmentation.zip",
        output:
            archive(directory(f"{DOWNLOADS}/dsec/{{split}}_semantic_segmentation")),
        log:
            f"{DOWNLOADS}/logs/unpack_dsec_labels/{{split}}.log",
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("unpack")["threads"]
        resources:
            mem_mb=resources_of("unpack")["mem_mb"],
            runtime=resources_of("unpack")["runtime"],
            gpu=resources_of("unpack")["gpu"],
        script:
            "../stages/unpack.py"

    rule dsec_sequence:
        input:
            unpack(dsec_sequence_inputs),
        output:
            directory(f"{DSEC_ROOT}/{{split}}/{{seq}}"),
        log:
            f"{DOWNLOADS}/logs/dsec_sequence/{{split}}/{{seq}}.log",
        wildcard_constraints:
            seq=alternatives(missing_sequences()),
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("unpack")["threads"]
        resources:
            mem_mb=resources_of("unpack")["mem_mb"],
            runtime=resources_of("unpack")["runtime"],
            gpu=resources_of("unpack")["gpu"],
        script:
            "../stages/dsec_sequence.py"

    rule night_sequence:
        input:
            unpack(night_sequence_inputs),
        output:
            directory(f"{DSEC_NIGHT_ROOT}/{{seq}}"),
        log:
            f"{DOWNLOADS}/logs/night_sequence/{{seq}}.log",
        wildcard_constraints:
            seq=alternatives(missing_night_sequences()),
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("unpack")["threads"]
        resources:
            mem_mb=resources_of("unpack")["mem_mb"],
            runtime=resources_of("unpack")["runtime"],
            gpu=resources_of("unpack")["gpu"],
        script:
            "../stages/night_sequence.py"

    rule place_night_archive:
        output:
            directory(NIGHT_ARCHIVE),
        log:
            f"{DOWNLOADS}/logs/place_night_archive.log",
        params:
            source=night_archive_source(),
        run:
            message = (
                f"{output[0]} (the DSEC Night-Semantic labels and warped frames) is missing and cannot be "
                f"downloaded by a script. Get it from {params.source}"
            )
            Path(log[0]).write_text(f"{message}\n")
            raise WorkflowError(message)

    rule unpack_cityscapes:
        input:
            archives=cityscapes_archive_inputs(),
        output:
            directory("{cityscapes_root}"),
        log:
            f"{DOWNLOADS}/logs/unpack_cityscapes/{{cityscapes_root}}.log",
        wildcard_constraints:
            cityscapes_root=alternatives(missing([CITYSCAPES_ROOT])),
        conda:
            "../envs/evseg.yaml"
        threads: resources_of("unpack")["threads"]
        resources:
            mem_mb=resources_of("unpack")["mem_mb"],
            runtime=resources_of("unpack")["runtime"],
            gpu=resources_of("unpack")["gpu"],
        script:
            "../stages/unpack.py"


rule place_by_hand:
    output:
        "{manual}",
    log:
        f"{DOWNLOADS}/logs/place_by_hand/{{manual}}.log",
    wildcard_constraints:
        manual=alternatives(missing(placed_by_hand(checkpoint_paths()))),
    params:
        source=manual_source,
    run:
        message = (
            f"{output[0]} is missing and cannot be downloaded by a script. Get it from "
            f"{params.source} and save it as {output[0]}"
        )
        Path(log[0]).write_text(message + "\n")
        raise WorkflowError(message)
