//! PNG checks, the size rule and resizing for init images. (skeleton: image helper fills this)
