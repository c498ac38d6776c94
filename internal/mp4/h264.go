package mp4

// The H.264 (ITU-T Rec. H.264 | ISO/IEC 14496-10) subset written here is
// Constrained Baseline (profile_idc 66, constraint_set0_flag and
// constraint_set1_flag set), CAVLC, one slice per picture, one reference
// frame. The first picture is an IDR picture of I_PCM macroblocks; every
// later picture is a P picture whose macroblocks are either P_Skip (the
// macroblock equals the one at the same place in the previous picture) or
// I_PCM. Every motion vector is therefore zero: a P_Skip macroblock's
// predicted vector (section 8.4.1.1) is built only from zero vectors and
// intra neighbours, both of which give zero. I_PCM carries the samples
// verbatim (section 8.3.5), so the decoded pictures equal the input exactly.

const (
	profileBaseline = 66
	// constraintFlags is the byte after profile_idc: constraint_set0_flag
	// (obeys Baseline) and constraint_set1_flag (obeys Main), which together
	// with profile_idc 66 mean Constrained Baseline (section A.2.1.1).
	constraintFlags = 0xC0

	log2MaxFrameNum = 16 // frame_num is 16 bits and wraps; POC type 2 follows it

	nalSlice = 1
	nalIDR   = 5
	nalSPS   = 7
	nalPPS   = 8

	sliceTypeP = 5 // 5..9: every slice of the picture has this type
	sliceTypeI = 7

	mbTypeIPCMinI = 25 // Table 7-11
	mbTypeIPCMinP = 30 // 5 + 25: intra types follow the five P types (Table 7-13)
)

// level is one row of Table A-1 (units: macroblocks, macroblocks/s, and
// 1000 bits/s or 1000 bits for MaxBR and MaxCPB).
type level struct {
	idc                       uint8
	maxMBPS, maxFS, maxDpbMbs int64
	maxBR, maxCPB             int64
}

// levels is Table A-1 without level 1b, lowest first.
var levels = []level{
	{10, 1485, 99, 396, 64, 175},
	{11, 3000, 396, 900, 192, 500},
	{12, 6000, 396, 2376, 384, 1000},
	{13, 11880, 396, 2376, 768, 2000},
	{20, 11880, 396, 2376, 2000, 2000},
	{21, 19800, 792, 4752, 4000, 4000},
	{22, 20250, 1620, 8100, 4000, 4000},
	{30, 40500, 1620, 8100, 10000, 10000},
	{31, 108000, 3600, 18000, 14000, 14000},
	{32, 216000, 5120, 20480, 20000, 20000},
	{40, 245760, 8192, 32768, 20000, 25000},
	{41, 245760, 8192, 32768, 50000, 62500},
	{42, 522240, 8704, 34816, 50000, 62500},
	{50, 589824, 22080, 110400, 135000, 135000},
	{51, 983040, 36864, 184320, 240000, 240000},
	{52, 2073600, 36864, 184320, 240000, 240000},
}

// cpbBrNalFactor turns MaxBR and MaxCPB into bits for the NAL HRD of the
// Baseline profile (Table A-2).
const cpbBrNalFactor = 1200

// fitsLevel reports whether a picture of mbW x mbH macroblocks at fps fits
// lv's frame size, frame side (section A.3.1 f, g), macroblock rate and DPB
// (one reference frame) limits.
func fitsLevel(lv level, mbW, mbH, fps int64) bool {
	fs := mbW * mbH
	return fs <= lv.maxFS && mbW*mbW <= 8*lv.maxFS && mbH*mbH <= 8*lv.maxFS &&
		fs*fps <= lv.maxMBPS && lv.maxDpbMbs/fs >= 1
}

// chooseLevel is the lowest level whose size and rate limits hold and whose
// hypothetical reference decoder (Annex C, variable bit rate) can carry the
// access units of sizes (bytes, in decoding order) at fps: bits arrive at
// MaxBR into a buffer of MaxCPB, filled for at most MaxCPB/MaxBR before the
// first picture is taken out, then one picture every 1/fps s; no picture may
// be taken out before all of it has arrived. ok is false when not even level
// 5.2 fits the size and rate; when only the bit rate is over every level
// (I_PCM at large sizes and high rates), the answer is the highest level
// that fits.
func chooseLevel(mbW, mbH, fps int64, sizes []uint32) (lv level, ok bool) {
	var fit *level
	for i := range levels {
		l := &levels[i]
		if !fitsLevel(*l, mbW, mbH, fps) {
			continue
		}
		fit = l
		br, cpb := l.maxBR*cpbBrNalFactor, l.maxCPB*cpbBrNalFactor
		// Picture n must have arrived by t0 + n/fps with t0 <= cpb/br:
		// 8*S(n) <= br*t0 + br*n/fps for every n, so (8*S(n)*fps - br*n) <= cpb*fps.
		var sum int64
		carried := true
		for n, s := range sizes {
			sum += int64(s)
			if 8*sum*fps-br*int64(n) > cpb*fps {
				carried = false
				break
			}
		}
		if carried {
			return *l, true
		}
	}
	if fit == nil {
		return level{}, false
	}
	return *fit, true
}

// spsParams is what the sequence parameter set says.
type spsParams struct {
	width, height int // visible size in luma samples (even)
	fps           int
	levelIdc      uint8
}

// buildSPS writes seq_parameter_set_rbsp() (section 7.3.2.1.1) with VUI
// (Annex E): square pixels, BT.709 limited range colour, the frame rate as
// timing information, and no frame reordering (max_num_reorder_frames 0), so
// a decoder outputs each picture as soon as it is decoded.
func buildSPS(p spsParams) []byte {
	mbW, mbH := (p.width+15)/16, (p.height+15)/16
	var w bitWriter
	w.u(8, profileBaseline)
	w.u(8, constraintFlags)
	w.u(8, uint32(p.levelIdc))
	w.ue(0)                   // seq_parameter_set_id
	w.ue(log2MaxFrameNum - 4) // log2_max_frame_num_minus4
	w.ue(2)                   // pic_order_cnt_type: output order = decoding order
	w.ue(1)                   // max_num_ref_frames
	w.flag(false)             // gaps_in_frame_num_value_allowed_flag
	w.ue(uint32(mbW - 1))     // pic_width_in_mbs_minus1
	w.ue(uint32(mbH - 1))     // pic_height_in_map_units_minus1
	w.flag(true)              // frame_mbs_only_flag
	w.flag(true)              // direct_8x8_inference_flag
	cropR, cropB := mbW*16-p.width, mbH*16-p.height
	if cropR != 0 || cropB != 0 {
		// In units of CropUnitX = CropUnitY = 2 for 4:2:0 frames (7-19, 7-20).
		w.flag(true)
		w.ue(0)
		w.ue(uint32(cropR / 2))
		w.ue(0)
		w.ue(uint32(cropB / 2))
	} else {
		w.flag(false)
	}
	w.flag(true) // vui_parameters_present_flag
	writeVUI(&w, p.fps)
	w.trailing()
	return w.buf
}

// writeVUI writes vui_parameters() (section E.1.1).
func writeVUI(w *bitWriter, fps int) {
	w.flag(true)  // aspect_ratio_info_present_flag
	w.u(8, 1)     // aspect_ratio_idc: 1:1
	w.flag(false) // overscan_info_present_flag
	w.flag(true)  // video_signal_type_present_flag
	w.u(3, 5)     // video_format: unspecified
	w.flag(false) // video_full_range_flag: Y 16..235, Cb/Cr 16..240
	w.flag(true)  // colour_description_present_flag
	w.u(8, 1)     // colour_primaries: BT.709
	w.u(8, 1)     // transfer_characteristics: BT.709
	w.u(8, 1)     // matrix_coefficients: BT.709
	w.flag(false) // chroma_loc_info_present_flag
	w.flag(true)  // timing_info_present_flag
	w.u(32, 1)    // num_units_in_tick
	// time_scale: a frame lasts two ticks (E-20 with field-based ticks).
	w.u(32, uint32(2*fps))
	w.flag(true)  // fixed_frame_rate_flag
	w.flag(false) // nal_hrd_parameters_present_flag
	w.flag(false) // vcl_hrd_parameters_present_flag
	w.flag(false) // pic_struct_present_flag
	w.flag(true)  // bitstream_restriction_flag
	w.flag(true)  // motion_vectors_over_pic_boundaries_flag
	w.ue(0)       // max_bytes_per_pic_denom: no limit
	w.ue(0)       // max_bits_per_mb_denom: no limit (I_PCM is 3072+ bits)
	w.ue(1)       // log2_max_mv_length_horizontal: every vector is zero
	w.ue(1)       // log2_max_mv_length_vertical
	w.ue(0)       // max_num_reorder_frames
	w.ue(1)       // max_dec_frame_buffering
}

// buildPPS writes pic_parameter_set_rbsp() (section 7.3.2.2): CAVLC, one
// slice group, deblocking control present so slices can turn the filter off.
func buildPPS() []byte {
	var w bitWriter
	w.ue(0)       // pic_parameter_set_id
	w.ue(0)       // seq_parameter_set_id
	w.flag(false) // entropy_coding_mode_flag: CAVLC
	w.flag(false) // bottom_field_pic_order_in_frame_present_flag
	w.ue(0)       // num_slice_groups_minus1
	w.ue(0)       // num_ref_idx_l0_default_active_minus1
	w.ue(0)       // num_ref_idx_l1_default_active_minus1
	w.flag(false) // weighted_pred_flag
	w.u(2, 0)     // weighted_bipred_idc
	w.se(0)       // pic_init_qp_minus26
	w.se(0)       // pic_init_qs_minus26
	w.se(0)       // chroma_qp_index_offset
	w.flag(true)  // deblocking_filter_control_present_flag
	w.flag(false) // constrained_intra_pred_flag
	w.flag(false) // redundant_pic_cnt_present_flag
	w.trailing()
	return w.buf
}

// sliceHeader writes slice_header() (section 7.3.3) for the one slice of
// picture number n (0 is the IDR picture). The deblocking filter is off
// (disable_deblocking_filter_idc 1): I_PCM samples must stay as sent.
func sliceHeader(w *bitWriter, n int) {
	idr := n == 0
	w.ue(0) // first_mb_in_slice
	if idr {
		w.ue(sliceTypeI)
	} else {
		w.ue(sliceTypeP)
	}
	w.ue(0)                                                // pic_parameter_set_id
	w.u(log2MaxFrameNum, uint32(n)&(1<<log2MaxFrameNum-1)) // frame_num
	if idr {
		w.ue(0) // idr_pic_id
	} else {
		w.flag(false) // num_ref_idx_active_override_flag
		w.flag(false) // ref_pic_list_modification_flag_l0
	}
	// dec_ref_pic_marking(): every picture is a reference (nal_ref_idc > 0).
	if idr {
		w.flag(false) // no_output_of_prior_pics_flag
		w.flag(false) // long_term_reference_flag
	} else {
		w.flag(false) // adaptive_ref_pic_marking_mode_flag: sliding window
	}
	w.se(0) // slice_qp_delta
	w.ue(1) // disable_deblocking_filter_idc
}

// pcmMB writes an I_PCM macroblock_layer() (section 7.3.5): mb_type,
// pcm_alignment_zero_bit up to the byte boundary, then 256 luma and 2 x 64
// chroma samples, each block in raster order.
func pcmMB(w *bitWriter, mbType uint32, samples []byte) {
	w.ue(mbType)
	w.alignZero()
	w.bytes(samples)
}
