# cmake -DBIN=ublk-rdma -DOUT=FILE -P completion.cmake: FILE = `BIN completion bash` (written whole
# or not at all).
get_filename_component(dir ${OUT} DIRECTORY)
file(MAKE_DIRECTORY ${dir})
execute_process(COMMAND ${BIN} completion bash OUTPUT_FILE ${OUT}.tmp COMMAND_ERROR_IS_FATAL ANY)
file(RENAME ${OUT}.tmp ${OUT})
