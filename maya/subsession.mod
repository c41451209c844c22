+ PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins
