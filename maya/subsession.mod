+ MAYAVERSION:2023 PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2024 PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2025 PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2026 PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2027 PLATFORM:linux subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2023 PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2024 PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2025 PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2026 PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2027 PLATFORM:mac subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2023 PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2024 PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2025 PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2026 PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins

+ MAYAVERSION:2027 PLATFORM:win64 subsession 0.1.0 .
scripts: scripts
plug-ins: plug-ins
