# name: base-packages
# description: git, curl, unzip and the tools the other steps use
apt-get update -q
apt-get install -y -q --no-install-recommends \
  ca-certificates curl git gnupg rsync software-properties-common unzip wget
