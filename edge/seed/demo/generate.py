"""Deterministic generator for the demo store `demo-001` seed files.

The hub loads the CSV files in this directory; it never runs this script. Re-running it rewrites
the same bytes (fixed random seed, no dependence on the current date):

    python edge/seed/demo/generate.py
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 20240601  # any fixed number; the output must not depend on the date or environment

# --------------------------------------------------------------------------------------------
# Categories: (category_id, parent_id, name_zh, name_en)
# --------------------------------------------------------------------------------------------
CATEGORIES = [
    ("fresh", "", "生鲜果蔬", "Fresh Produce"),
    ("meat", "", "肉禽水产", "Meat & Seafood"),
    ("dairy", "", "乳品烘焙", "Dairy & Bakery"),
    ("staples", "", "粮油调味", "Grocery & Staples"),
    ("snacks", "", "休闲零食饮料", "Snacks & Drinks"),
    ("household", "", "日用百货", "Household"),
    ("personal", "", "个人护理", "Personal Care"),
    ("clothing", "", "服装", "Clothing"),
    ("fresh-fruit", "fresh", "新鲜水果", "Fresh Fruit"),
    ("fresh-veg", "fresh", "新鲜蔬菜", "Vegetables"),
    ("fresh-eggs", "fresh", "蛋品", "Eggs"),
    ("fresh-tofu", "fresh", "豆制品", "Tofu & Soy Products"),
    ("meat-pork", "meat", "猪肉", "Pork"),
    ("meat-beef-lamb", "meat", "牛羊肉", "Beef & Lamb"),
    ("meat-poultry", "meat", "禽肉", "Poultry"),
    ("meat-seafood", "meat", "水产海鲜", "Fish & Seafood"),
    ("dairy-milk", "dairy", "牛奶", "Milk"),
    ("dairy-yogurt", "dairy", "酸奶乳饮", "Yogurt & Dairy Drinks"),
    ("dairy-bakery", "dairy", "面包糕点", "Bread & Bakery"),
    ("staples-rice-flour", "staples", "米面杂粮", "Rice, Flour & Grains"),
    ("staples-oil", "staples", "食用油", "Cooking Oil"),
    ("staples-seasoning", "staples", "调味品", "Seasonings & Sauces"),
    ("staples-noodles", "staples", "方便速食", "Noodles & Frozen Food"),
    ("snacks-biscuits", "snacks", "饼干膨化", "Biscuits & Crisps"),
    ("snacks-nuts", "snacks", "坚果炒货", "Nuts & Seeds"),
    ("snacks-candy", "snacks", "糖果巧克力", "Candy & Chocolate"),
    ("snacks-drinks", "snacks", "饮料酒水", "Drinks"),
    ("household-paper", "household", "纸品湿巾", "Paper & Wipes"),
    ("household-cleaning", "household", "清洁用品", "Cleaning & Home"),
    ("personal-oral", "personal", "口腔护理", "Oral Care"),
    ("personal-bath", "personal", "洗护用品", "Bath, Hair & Body"),
    ("clothing-apparel", "clothing", "服饰", "Apparel"),
    ("clothing-socks-underwear", "clothing", "袜子内衣", "Socks & Underwear"),
]

# Agricultural produce is taxed at 9 %; everything else defaults to 13 % (per-item overrides below).
TAX9_CATEGORIES = {
    "fresh-fruit", "fresh-veg", "fresh-eggs",
    "meat-pork", "meat-beef-lamb", "meat-poultry", "meat-seafood",
    "staples-rice-flour", "staples-oil",
}

# --------------------------------------------------------------------------------------------
# Items: "name_zh ; name_en ; brand ; price_fen ; options"
# options (space separated):
#   kg            weighed item, price per kg, gets a 5-digit plu, no barcode
#   plu:NNNNN     force this plu
#   instore       `each` item sold with price-embedded (prefix 23) labels: plu, no barcode
#   ean8 / upca   barcode symbology other than the default EAN-13 (69 prefix)
#   alt           a second EAN-13 (alternate pack/label)
#   int           an internal clothing code (C1000NN) besides the EAN-13
#   tax9 / tax13  override the category's VAT rate
#   t:a,b         tags
#   batch         stock comes from batches.csv (initial_stock 0)
#   low / high    start below the low / above the high threshold (demo alerts)
# --------------------------------------------------------------------------------------------
ITEMS: dict[str, str] = {
    "fresh-fruit": """
散装红富士苹果 ; Loose Fuji Apples ; ; 1598 ; kg plu:12345 t:local
香蕉 ; Bananas ; ; 698 ; kg
砂糖橘 ; Shatang Mandarins ; ; 998 ; kg t:promo
皇冠梨 ; Crown Pears ; ; 798 ; kg
巨峰葡萄 ; Kyoho Grapes ; ; 1598 ; kg
麒麟西瓜 ; Qilin Watermelon ; ; 398 ; kg t:seasonal
台农芒果 ; Tainong Mangoes ; ; 1398 ; kg
徐香猕猴桃 ; Xuxiang Kiwifruit ; ; 1198 ; kg
赣南脐橙 ; Gannan Navel Oranges ; ; 898 ; kg t:local
佳沃 蓝莓 125g ; Joyvio Blueberries 125g ; 佳沃 ; 1990 ;
千禧圣女果 500g盒装 ; Cherry Tomatoes 500g Box ; ; 990 ;
新奇士 脐橙 4个装 ; Sunkist Navel Oranges 4-Pack ; 新奇士 ; 2990 ; upca t:imported
阳光玫瑰葡萄 500g盒装 ; Shine Muscat Grapes 500g Box ; ; 2990 ; t:new
海南椰青 单个 ; Hainan Young Coconut ; ; 890 ; low
""",
    "fresh-veg": """
西红柿 ; Tomatoes ; ; 598 ; kg t:local
黄瓜 ; Cucumbers ; ; 498 ; kg t:local
土豆 ; Potatoes ; ; 298 ; kg
大白菜 ; Napa Cabbage ; ; 198 ; kg t:local
胡萝卜 ; Carrots ; ; 358 ; kg
青椒 ; Green Peppers ; ; 698 ; kg
长茄子 ; Long Eggplant ; ; 598 ; kg
西兰花 ; Broccoli ; ; 898 ; kg
洋葱 ; Onions ; ; 298 ; kg high
生姜 ; Ginger ; ; 1298 ; kg
大蒜 ; Garlic ; ; 1198 ; kg
有机菠菜 300g ; Organic Spinach 300g ; ; 590 ; t:organic,local
金针菇 200g ; Enoki Mushrooms 200g ; ; 290 ;
绿豆芽 250g ; Mung Bean Sprouts 250g ; ; 250 ;
香菜 100g ; Coriander 100g ; ; 350 ;
小香葱 100g ; Spring Onions 100g ; ; 250 ; low
鲜香菇 250g ; Fresh Shiitake 250g ; ; 690 ;
""",
    "fresh-eggs": """
散装鲜鸡蛋 ; Loose Fresh Eggs ; ; 1198 ; kg batch
德青源 土鸡蛋 10枚 ; DQY Free-Range Eggs 10pcs ; 德青源 ; 1690 ; batch
圣迪乐村 鲜鸡蛋 30枚 ; Sundaily Village Eggs 30pcs ; 圣迪乐村 ; 2990 ; batch
黄天鹅 可生食鸡蛋 10枚 ; Huangtiane Raw-Edible Eggs 10pcs ; 黄天鹅 ; 2990 ; batch t:new
鹌鹑蛋 20枚 ; Quail Eggs 20pcs ; ; 990 ; batch
秦邮 高邮咸鸭蛋 6枚 ; Qinyou Gaoyou Salted Duck Eggs 6pcs ; 秦邮 ; 1590 ; tax13
""",
    "fresh-tofu": """
祖名 内酯豆腐 400g ; Zuming Silken Tofu 400g ; 祖名 ; 350 ; batch
祖名 老豆腐 500g ; Zuming Firm Tofu 500g ; 祖名 ; 450 ; batch
祖名 原味豆浆 1L ; Zuming Soy Milk 1L ; 祖名 ; 490 ; batch
清美 五香豆干 200g ; Qingmei Five-Spice Dried Tofu 200g ; 清美 ; 590 ; batch
清美 千张 300g ; Qingmei Tofu Skin Sheets 300g ; 清美 ; 590 ;
白玉 腐竹 250g ; Baiyu Dried Bean Curd Sticks 250g ; 白玉 ; 1290 ;
""",
    "meat-pork": """
猪五花肉 ; Pork Belly ; ; 3598 ; kg batch
猪前腿肉 ; Pork Shoulder ; ; 2798 ; kg batch
猪肋排 ; Pork Spare Ribs ; ; 4598 ; kg batch
猪里脊 ; Pork Tenderloin ; ; 3298 ; kg batch
猪蹄 ; Pork Trotters ; ; 2598 ; kg
双汇 冷鲜猪肉馅 400g ; Shuanghui Chilled Minced Pork 400g ; 双汇 ; 1690 ; batch
双汇 王中王火腿肠 10支 ; Shuanghui Wangzhongwang Ham Sausage 10pcs ; 双汇 ; 1290 ; tax13
酱香猪耳 熟食盒 ; Braised Pork Ear Deli Box ; ; 1590 ; instore tax13 batch
""",
    "meat-beef-lamb": """
牛腱子 ; Beef Shank ; ; 8998 ; kg batch
牛腩 ; Beef Brisket ; ; 7598 ; kg batch
羊后腿肉 ; Lamb Leg ; ; 8598 ; kg
科尔沁 肥牛卷 500g ; Horqin Sliced Fatty Beef 500g ; 科尔沁 ; 3990 ;
草原宏宝 羊肉卷 400g ; Grassland Hongbao Lamb Rolls 400g ; 草原宏宝 ; 3590 ;
恒都 原切牛排 200g ; Hengdu Sirloin Steak 200g ; 恒都 ; 4990 ; t:new
卤牛肉 熟食盒 ; Braised Beef Deli Box ; ; 3290 ; instore tax13 batch
""",
    "meat-poultry": """
鸡胸肉 ; Chicken Breast ; ; 1998 ; kg batch
鸡翅中 ; Chicken Wing Mids ; ; 4598 ; kg batch
三黄鸡 整只 ; Sanhuang Whole Chicken ; ; 2398 ; kg
圣农 鸡腿 1kg ; Sunner Chicken Drumsticks 1kg ; 圣农 ; 2790 ;
凤祥 鸡爪 500g ; Fovo Chicken Feet 500g ; 凤祥 ; 2290 ;
德州扒鸡 500g ; Dezhou Braised Chicken 500g ; 德州扒鸡 ; 3980 ; tax13
奥尔良烤鸡腿 熟食盒 ; Orleans Roast Chicken Leg Deli Box ; ; 1290 ; instore tax13 batch
""",
    "meat-seafood": """
鲜活鲈鱼 ; Live Sea Bass ; ; 4598 ; kg
草鱼 ; Grass Carp ; ; 1998 ; kg
基围虾 ; Greasyback Shrimp ; ; 8998 ; kg
国联 冷冻南美白虾 500g ; Guolian Frozen White Shrimp 500g ; 国联 ; 4590 ;
海霸王 冷冻巴沙鱼柳 400g ; Hai Ba Wang Frozen Basa Fillet 400g ; 海霸王 ; 1990 ;
獐子岛 即食海带丝 200g ; Zhangzidao Ready-to-Eat Kelp Shreds 200g ; 獐子岛 ; 590 ; tax13
""",
    "dairy-milk": """
伊利 纯牛奶 250ml×16盒 ; Yili Pure Milk 250ml x16 ; 伊利 ; 6990 ; tax9 batch t:promo
蒙牛 纯牛奶 250ml ; Mengniu Pure Milk 250ml ; 蒙牛 ; 350 ; tax9 alt batch
特仑苏 纯牛奶 250ml×12盒 ; Telunsu Pure Milk 250ml x12 ; 特仑苏 ; 6490 ; tax9 batch
金典 有机纯牛奶 250ml×12盒 ; Satine Organic Pure Milk 250ml x12 ; 金典 ; 6590 ; tax9 batch t:organic
光明 优倍鲜牛奶 950ml ; Bright Youbei Fresh Milk 950ml ; 光明 ; 1690 ; tax9 batch t:chilled
君乐宝 悦鲜活鲜牛奶 450ml ; Junlebao Yuexianhuo Fresh Milk 450ml ; 君乐宝 ; 990 ; tax9 batch t:chilled
蒙牛 真果粒 草莓味 250g×12盒 ; Mengniu Fruit Milk Drink Strawberry 250g x12 ; 蒙牛 ; 4990 ;
伊利 QQ星 儿童成长牛奶 125ml×4盒 ; Yili QQ Star Kids Milk 125ml x4 ; 伊利 ; 1290 ; t:kids
""",
    "dairy-yogurt": """
安慕希 希腊风味酸奶 205g×12盒 ; Ambrosial Greek-Style Yogurt 205g x12 ; 安慕希 ; 6990 ; batch
光明 莫斯利安 酸奶 200g×12盒 ; Bright Momchilovtsi Yogurt 200g x12 ; 光明 ; 5990 ; batch
简爱 原味裸酸奶 135g×3杯 ; Simplelove Plain Yogurt 135g x3 ; 简爱 ; 1890 ; batch t:chilled
卡士 餐后一小时 100g×3杯 ; Classy Kiss After-Meal Yogurt 100g x3 ; 卡士 ; 1290 ; batch t:chilled
君乐宝 简醇 0蔗糖酸奶 150g ; Junlebao Jianchun Sugar-Free Yogurt 150g ; 君乐宝 ; 590 ; batch t:chilled
养乐多 活菌型乳酸菌饮品 100ml×5瓶 ; Yakult Probiotic Drink 100ml x5 ; 养乐多 ; 1150 ; batch t:chilled
蒙牛 冠益乳 原味 250g ; Mengniu Guanyiru Plain Yogurt 250g ; 蒙牛 ; 690 ; batch t:chilled
味全 优酪乳 原味 435ml ; Weichuan Drinking Yogurt 435ml ; 味全 ; 1290 ;
伊利 畅轻 燕麦酸奶 250g ; Yili Changqing Oat Yogurt 250g ; 伊利 ; 790 ;
""",
    "dairy-bakery": """
桃李 醇熟切片面包 400g ; Taoli Sliced Bread 400g ; 桃李 ; 990 ; batch
曼可顿 全麦切片面包 400g ; Mankattan Whole Wheat Sliced Bread 400g ; 曼可顿 ; 1290 ; batch
桃李 豆沙面包 75g ; Taoli Red Bean Bun 75g ; 桃李 ; 350 ; batch
达利园 法式软面包 400g ; Daliyuan French Soft Bread 400g ; 达利园 ; 1390 ;
港荣 蒸蛋糕 468g ; Gangrong Steamed Sponge Cake 468g ; 港荣 ; 1990 ;
现烤菠萝包 ; In-Store Baked Pineapple Bun ; ; 690 ; instore batch t:fresh-baked
现烤全麦吐司 ; In-Store Baked Whole Wheat Loaf ; ; 1290 ; instore batch t:fresh-baked
手工蛋挞 4只装 ; Handmade Egg Tarts 4pcs ; ; 1590 ; instore batch t:fresh-baked
""",
    "staples-rice-flour": """
五常 稻花香大米 5kg ; Wuchang Daohuaxiang Rice 5kg ; 五常 ; 8990 ; t:premium
金龙鱼 东北大米 5kg ; Arawana Northeast Rice 5kg ; 金龙鱼 ; 4590 ;
福临门 丝苗米 5kg ; Fortune Simiao Rice 5kg ; 福临门 ; 4290 ; t:promo
散装东北大米 ; Loose Northeast Rice ; ; 598 ; kg
散装黄小米 ; Loose Foxtail Millet ; ; 1198 ; kg
香满园 小麦粉 5kg ; Xiangmanyuan Wheat Flour 5kg ; 香满园 ; 3290 ;
燕之坊 五色糙米 1kg ; Yanzhifang Mixed Brown Rice 1kg ; 燕之坊 ; 1590 ;
十月稻田 东北大米 2.5kg ; SHIYUE DAOTIAN Northeast Rice 2.5kg ; 十月稻田 ; 2990 ; low
""",
    "staples-oil": """
金龙鱼 1:1:1调和油 5L ; Arawana 1:1:1 Blended Oil 5L ; 金龙鱼 ; 6990 ; high
鲁花 5S压榨一级花生油 5L ; Luhua 5S Pressed Peanut Oil 5L ; 鲁花 ; 14990 ;
福临门 大豆油 5L ; Fortune Soybean Oil 5L ; 福临门 ; 5990 ;
金龙鱼 稻米油 4L ; Arawana Rice Bran Oil 4L ; 金龙鱼 ; 5990 ;
胡姬花 古法小榨花生油 900ml ; Hujihua Traditional Peanut Oil 900ml ; 胡姬花 ; 3290 ;
欧丽薇兰 特级初榨橄榄油 750ml ; Olivoila Extra Virgin Olive Oil 750ml ; 欧丽薇兰 ; 8990 ;
金龙鱼 芝麻油 220ml ; Arawana Sesame Oil 220ml ; 金龙鱼 ; 1990 ;
""",
    "staples-seasoning": """
海天 味极鲜酱油 760ml ; Haday Weijixian Soy Sauce 760ml ; 海天 ; 1290 ;
海天 老抽王 500ml ; Haday Superior Dark Soy Sauce 500ml ; 海天 ; 990 ;
李锦记 旧庄特级蚝油 510g ; Lee Kum Kee Premium Oyster Sauce 510g ; 李锦记 ; 1390 ;
恒顺 镇江香醋 500ml ; Hengshun Zhenjiang Vinegar 500ml ; 恒顺 ; 890 ;
中盐 加碘精制盐 400g ; China Salt Iodized Refined Salt 400g ; 中盐 ; 250 ; tax9
太太乐 鸡精 200g ; Totole Chicken Bouillon 200g ; 太太乐 ; 1290 ;
王守义 十三香 45g ; Wangshouyi Thirteen Spices 45g ; 王守义 ; 650 ;
老干妈 风味豆豉油辣椒 280g ; Lao Gan Ma Chili Crisp with Black Beans 280g ; 老干妈 ; 1350 ;
鹃城牌 郫县豆瓣酱 500g ; Juancheng Pixian Bean Paste 500g ; 鹃城牌 ; 990 ; low
太古 优级白砂糖 1kg ; Taikoo Premium White Sugar 1kg ; 太古 ; 1190 ;
""",
    "staples-noodles": """
康师傅 红烧牛肉面 单包 ; Master Kong Braised Beef Noodles Single ; 康师傅 ; 350 ;
康师傅 红烧牛肉面 5连包 ; Master Kong Braised Beef Noodles 5-Pack ; 康师傅 ; 1390 ; t:promo
统一 老坛酸菜牛肉面 5连包 ; Uni-President Pickled Cabbage Beef Noodles 5-Pack ; 统一 ; 1390 ;
白象 汤好喝 老母鸡汤面 5连包 ; Baixiang Old Hen Soup Noodles 5-Pack ; 白象 ; 1590 ;
日清 合味道 海鲜风味杯面 84g ; Nissin Cup Noodles Seafood 84g ; 日清 ; 650 ;
金沙河 原味挂面 1kg ; Jinshahe Plain Dried Noodles 1kg ; 金沙河 ; 790 ; tax9
陈克明 鸡蛋挂面 800g ; Chenkeming Egg Dried Noodles 800g ; 陈克明 ; 990 ; tax9
湾仔码头 玉米猪肉水饺 720g ; Wanchai Ferry Pork & Corn Dumplings 720g ; 湾仔码头 ; 3290 ;
思念 三鲜水饺 1kg ; Synear Three-Delicacy Dumplings 1kg ; 思念 ; 2690 ;
三全 黑芝麻汤圆 500g ; Sanquan Black Sesame Tangyuan 500g ; 三全 ; 1290 ;
好欢螺 螺蛳粉 400g ; Haohuanluo Luosifen 400g ; 好欢螺 ; 1590 ; t:new
今麦郎 一菜一面 3连包 ; Jinmailang Yicai Yimian Noodles 3-Pack ; 今麦郎 ; 1190 ;
""",
    "snacks-biscuits": """
乐事 原味薯片 70g ; Lay's Original Potato Chips 70g ; 乐事 ; 750 ;
乐事 黄瓜味薯片 70g ; Lay's Cucumber Potato Chips 70g ; 乐事 ; 750 ;
品客 原味薯片 110g ; Pringles Original 110g ; 品客 ; 1190 ; upca t:imported
奥利奥 原味夹心饼干 97g ; Oreo Original Sandwich Cookies 97g ; 奥利奥 ; 590 ;
好丽友 巧克力派 12枚 ; Orion Choco Pie 12pcs ; 好丽友 ; 1690 ;
旺旺 雪饼 84g ; Want Want Snow Rice Crackers 84g ; 旺旺 ; 590 ;
旺旺 仙贝 52g ; Want Want Senbei 52g ; 旺旺 ; 550 ;
达利园 蛋黄派 250g ; Daliyuan Egg Yolk Pie 250g ; 达利园 ; 1190 ; batch
康师傅 3+2苏打夹心饼干 125g ; Master Kong 3+2 Soda Sandwich Crackers 125g ; 康师傅 ; 590 ;
上好佳 鲜虾片 40g ; Oishi Prawn Crackers 40g ; 上好佳 ; 350 ; ean8
卫龙 大面筋 102g ; Weilong Spicy Gluten Strips 102g ; 卫龙 ; 550 ;
盼盼 法式小面包 200g ; Panpan French Mini Bread 200g ; 盼盼 ; 890 ; batch
三只松鼠 手撕面包 1kg ; Three Squirrels Hand-Torn Bread 1kg ; 三只松鼠 ; 2990 ; batch
良品铺子 猪肉脯 100g ; Bestore Pork Jerky 100g ; 良品铺子 ; 2490 ;
溜溜梅 青梅 160g ; Liuliumei Green Plums 160g ; 溜溜梅 ; 990 ;
可比克 原味薯片 60g ; Copico Original Potato Chips 60g ; 可比克 ; 500 ; ean8
""",
    "snacks-nuts": """
三只松鼠 每日坚果 750g 30袋 ; Three Squirrels Daily Nuts 750g 30 Bags ; 三只松鼠 ; 12900 ; t:gift
三只松鼠 碧根果 210g ; Three Squirrels Pecans 210g ; 三只松鼠 ; 2990 ;
三只松鼠 夏威夷果 265g ; Three Squirrels Macadamias 265g ; 三只松鼠 ; 2990 ;
洽洽 香瓜子 308g ; ChaCheer Spiced Sunflower Seeds 308g ; 洽洽 ; 1190 ;
洽洽 焦糖瓜子 308g ; ChaCheer Caramel Sunflower Seeds 308g ; 洽洽 ; 1190 ;
良品铺子 开心果 200g ; Bestore Pistachios 200g ; 良品铺子 ; 3990 ;
百草味 紫皮腰果 200g ; Be&Cheery Cashews 200g ; 百草味 ; 3290 ;
科克兰 综合坚果 1.13kg ; Kirkland Signature Mixed Nuts 1.13kg ; 科克兰 ; 15900 ; upca t:imported
老街口 焦糖山核桃味瓜子 500g ; Laojiekou Caramel Hickory Sunflower Seeds 500g ; 老街口 ; 1590 ;
散装五香瓜子 ; Loose Five-Spice Sunflower Seeds ; ; 2598 ; kg tax13
散装琥珀核桃仁 ; Loose Amber Walnut Kernels ; ; 7998 ; kg tax13
""",
    "snacks-candy": """
德芙 丝滑牛奶巧克力 43g ; Dove Silky Milk Chocolate 43g ; 德芙 ; 790 ;
德芙 碗装巧克力 252g ; Dove Chocolate Bowl 252g ; 德芙 ; 4990 ; t:gift
士力架 花生夹心巧克力 51g ; Snickers 51g ; 士力架 ; 450 ; ean8
费列罗 榛果威化巧克力 16粒 ; Ferrero Rocher 16pcs ; 费列罗 ; 7990 ; t:gift
好时 牛奶巧克力 43g ; Hershey's Milk Chocolate Bar 43g ; 好时 ; 990 ; upca t:imported
大白兔 奶糖 227g ; White Rabbit Creamy Candy 227g ; 大白兔 ; 1890 ;
阿尔卑斯 棒棒糖 20支 ; Alpenliebe Lollipops 20pcs ; 阿尔卑斯 ; 1290 ;
益达 木糖醇口香糖 40粒瓶装 ; Extra Xylitol Gum 40pcs Bottle ; 益达 ; 990 ;
绿箭 薄荷口香糖 5片 ; Doublemint Gum 5 Sticks ; 绿箭 ; 250 ; ean8
炫迈 无糖口香糖 28片 ; Stride Sugar-Free Gum 28pcs ; 炫迈 ; 1190 ;
旺仔 QQ糖 70g ; Wangzai QQ Gummies 70g ; 旺旺 ; 450 ; ean8
荷氏 薄荷糖 34g ; Halls Mints 34g ; 荷氏 ; 790 ; ean8
曼妥思 薄荷糖 37.5g ; Mentos Mint 37.5g ; 曼妥思 ; 350 ; ean8
彩虹糖 原果味 45g ; Skittles Original 45g ; 彩虹糖 ; 590 ; ean8
徐福记 散装酥心糖 ; Hsu Fu Chi Loose Crispy Candy ; 徐福记 ; 4990 ; kg t:bulk
散装什锦水果糖 ; Loose Assorted Fruit Candy ; ; 2998 ; kg t:bulk
金丝猴 奶糖 318g ; Golden Monkey Milk Candy 318g ; 金丝猴 ; 1590 ;
""",
    "snacks-drinks": """
农夫山泉 饮用天然水 550ml ; Nongfu Spring Natural Water 550ml ; 农夫山泉 ; 200 ; alt high
农夫山泉 饮用天然水 1.5L ; Nongfu Spring Natural Water 1.5L ; 农夫山泉 ; 450 ;
怡宝 纯净水 555ml ; C'estbon Purified Water 555ml ; 怡宝 ; 200 ;
百岁山 天然矿泉水 570ml ; Ganten Natural Mineral Water 570ml ; 百岁山 ; 300 ;
可口可乐 330ml罐装 ; Coca-Cola 330ml Can ; 可口可乐 ; 300 ; alt
可口可乐 2L ; Coca-Cola 2L ; 可口可乐 ; 790 ;
百事可乐 330ml罐装 ; Pepsi 330ml Can ; 百事 ; 300 ;
雪碧 500ml ; Sprite 500ml ; 雪碧 ; 350 ;
元气森林 白桃味苏打气泡水 480ml ; Genki Forest White Peach Sparkling Water 480ml ; 元气森林 ; 550 ; t:new
康师傅 冰红茶 500ml ; Master Kong Iced Black Tea 500ml ; 康师傅 ; 350 ;
统一 绿茶 500ml ; Uni-President Green Tea 500ml ; 统一 ; 350 ;
统一 阿萨姆奶茶 500ml ; Uni-President Assam Milk Tea 500ml ; 统一 ; 550 ;
东方树叶 茉莉花茶 500ml ; Oriental Leaf Jasmine Tea 500ml ; 农夫山泉 ; 550 ;
红牛 维生素功能饮料 250ml ; Red Bull Energy Drink 250ml ; 红牛 ; 650 ; alt
王老吉 凉茶 310ml ; Wong Lo Kat Herbal Tea 310ml ; 王老吉 ; 400 ;
椰树 椰汁 245ml ; Coconut Palm Coconut Juice 245ml ; 椰树 ; 450 ;
汇源 100%橙汁 1L ; Huiyuan 100% Orange Juice 1L ; 汇源 ; 1690 ;
脉动 青柠味 600ml ; Mizone Lime 600ml ; 脉动 ; 500 ;
美汁源 果粒橙 420ml ; Minute Maid Pulpy Orange 420ml ; 美汁源 ; 450 ;
青岛啤酒 经典 500ml罐装 ; Tsingtao Classic Beer 500ml Can ; 青岛啤酒 ; 650 ; t:alcohol
雪花 勇闯天涯 500ml罐装 ; Snow Brave the World Beer 500ml Can ; 雪花 ; 550 ; t:alcohol
百威 啤酒 500ml罐装 ; Budweiser Beer 500ml Can ; 百威 ; 750 ; t:alcohol
牛栏山 二锅头 500ml ; Niulanshan Erguotou 500ml ; 牛栏山 ; 1590 ; t:alcohol
优鲜沛 蔓越莓汁 1L ; Ocean Spray Cranberry Juice 1L ; 优鲜沛 ; 2990 ; upca t:imported
雀巢 咖啡1+2原味 15g×7条 ; Nescafe 1+2 Original 15g x7 ; 雀巢 ; 1590 ;
立顿 黄牌精选红茶 100包 ; Lipton Yellow Label Tea 100 Bags ; 立顿 ; 3990 ;
""",
    "household-paper": """
清风 原木纯品抽纸 3层130抽×6包 ; Breeze Facial Tissue 3-Ply 130 Sheets x6 ; 清风 ; 1990 ; t:promo
维达 超韧卷纸 4层×10卷 ; Vinda Super Tough Toilet Roll 4-Ply x10 ; 维达 ; 3290 ;
心相印 茶语抽纸 3层120抽×6包 ; Hearttex Tea Facial Tissue x6 ; 心相印 ; 2190 ;
洁柔 Face手帕纸 18包 ; C&S Face Pocket Tissue 18 Packs ; 洁柔 ; 1290 ; low
维达 婴儿手口湿巾 80片 ; Vinda Baby Hand & Mouth Wipes 80pcs ; 维达 ; 1590 ; t:baby
清风 厨房用纸 2卷 ; Breeze Kitchen Towels 2 Rolls ; 清风 ; 1290 ;
心相印 卷纸 3层×12卷 ; Hearttex Toilet Roll 3-Ply x12 ; 心相印 ; 3590 ;
""",
    "household-cleaning": """
立白 超洁薰衣香洗衣液 3kg ; Liby Lavender Laundry Liquid 3kg ; 立白 ; 4590 ;
蓝月亮 深层洁净洗衣液 3kg ; Blue Moon Deep Clean Laundry Liquid 3kg ; 蓝月亮 ; 5490 ; t:promo
雕牌 超能皂粉 1.6kg ; Diao Soap Powder 1.6kg ; 雕牌 ; 2290 ;
立白 茶籽洗洁精 1.45kg ; Liby Tea Seed Dish Soap 1.45kg ; 立白 ; 1490 ;
超能 洗衣凝珠 30颗 ; Chaoneng Laundry Pods 30pcs ; 超能 ; 3990 ;
威露士 衣物消毒液 1L ; Walch Laundry Sanitizer 1L ; 威露士 ; 3990 ;
威猛先生 厨房重油污净 500g ; Mr Muscle Kitchen Degreaser 500g ; 威猛先生 ; 2590 ;
蓝月亮 洁厕灵 600g ; Blue Moon Toilet Cleaner 600g ; 蓝月亮 ; 1290 ;
妙洁 加厚垃圾袋 3卷 ; Miaojie Thick Garbage Bags 3 Rolls ; 妙洁 ; 1290 ;
妙洁 保鲜膜 30m ; Miaojie Cling Film 30m ; 妙洁 ; 1590 ;
3M 思高 百洁布 4片 ; 3M Scotch-Brite Scrub Pads 4pcs ; 3M ; 990 ;
雷达 电热蚊香液 套装 ; Raid Liquid Mosquito Repellent Set ; 雷达 ; 2990 ; t:seasonal
南孚 5号碱性电池 4粒 ; Nanfu AA Alkaline Batteries 4pcs ; 南孚 ; 1990 ; low
双枪 竹筷子 10双 ; Suncha Bamboo Chopsticks 10 Pairs ; 双枪 ; 1590 ;
蓝月亮 芦荟抑菌洗手液 500g ; Blue Moon Aloe Hand Wash 500g ; 蓝月亮 ; 1990 ;
""",
    "personal-oral": """
云南白药 牙膏 180g ; Yunnan Baiyao Toothpaste 180g ; 云南白药 ; 3490 ;
高露洁 超感白牙膏 120g ; Colgate Optic White Toothpaste 120g ; 高露洁 ; 1590 ;
黑人 双重薄荷牙膏 225g ; Darlie Double Action Toothpaste 225g ; 黑人 ; 1890 ;
佳洁士 3D炫白牙膏 120g ; Crest 3D White Toothpaste 120g ; 佳洁士 ; 1690 ;
舒适达 抗敏感牙膏 100g ; Sensodyne Toothpaste 100g ; 舒适达 ; 3290 ;
高露洁 细毛软牙刷 3支装 ; Colgate Slim Soft Toothbrush 3pcs ; 高露洁 ; 1990 ;
李施德林 漱口水 500ml ; Listerine Mouthwash 500ml ; 李施德林 ; 3990 ;
冷酸灵 抗敏感牙膏 180g ; Lengsuanling Sensitive Toothpaste 180g ; 冷酸灵 ; 1290 ; low
""",
    "personal-bath": """
海飞丝 去屑洗发水 400ml ; Head & Shoulders Anti-Dandruff Shampoo 400ml ; 海飞丝 ; 4990 ;
潘婷 乳液修护洗发水 400ml ; Pantene Repair Shampoo 400ml ; 潘婷 ; 3990 ;
清扬 男士去屑洗发水 400ml ; Clear Men Anti-Dandruff Shampoo 400ml ; 清扬 ; 5290 ;
飘柔 人参滋养洗发水 400ml ; Rejoice Ginseng Shampoo 400ml ; 飘柔 ; 2990 ;
舒肤佳 纯白香皂 108g ; Safeguard Pure White Soap 108g ; 舒肤佳 ; 450 ; ean8
舒肤佳 柠檬沐浴露 720ml ; Safeguard Lemon Body Wash 720ml ; 舒肤佳 ; 3990 ;
六神 花露水 195ml ; Liushen Floral Water 195ml ; 六神 ; 1390 ; t:seasonal
大宝 SOD蜜 200ml ; Dabao SOD Lotion 200ml ; 大宝 ; 2190 ;
隆力奇 蛇油护手霜 80g ; Longrich Snake Oil Hand Cream 80g ; 隆力奇 ; 990 ;
妮维雅 男士控油洗面奶 100g ; Nivea Men Oil Control Cleanser 100g ; 妮维雅 ; 3290 ;
曼秀雷敦 润唇膏 3.5g ; Mentholatum Lip Balm 3.5g ; 曼秀雷敦 ; 2590 ; ean8
护舒宝 日用卫生巾 10片 ; Whisper Day Pads 10pcs ; 护舒宝 ; 1590 ;
苏菲 弹力贴身夜用卫生巾 8片 ; Sofy Night Pads 8pcs ; 苏菲 ; 1290 ;
帮宝适 纸尿裤 L码 52片 ; Pampers Diapers Size L 52pcs ; 帮宝适 ; 9990 ; t:baby low
吉列 锋速3剃须刀 ; Gillette Mach3 Razor ; 吉列 ; 3990 ;
云南白药 养元青洗发水 400ml ; Yunnan Baiyao Yangyuanqing Shampoo 400ml ; 云南白药 ; 5990 ; t:new
""",
    "clothing-apparel": """
南极人 男士纯棉圆领T恤 白色 L ; Nanjiren Men's Cotton Crew T-Shirt White L ; 南极人 ; 4990 ; int
南极人 男士纯棉圆领T恤 黑色 XL ; Nanjiren Men's Cotton Crew T-Shirt Black XL ; 南极人 ; 4990 ; int
南极人 女士纯棉V领T恤 白色 M ; Nanjiren Women's Cotton V-Neck T-Shirt White M ; 南极人 ; 4990 ; int
红豆 男士休闲短裤 L ; Hodo Men's Casual Shorts L ; 红豆 ; 5990 ; int
红豆 女士弹力打底裤 M ; Hodo Women's Stretch Leggings M ; 红豆 ; 3990 ;
恒源祥 女士棉质家居服套装 M ; Hengyuanxiang Women's Cotton Loungewear Set M ; 恒源祥 ; 8990 ; int t:new
巴拉巴拉 儿童卡通T恤 120cm ; Balabala Kids Cartoon T-Shirt 120cm ; 巴拉巴拉 ; 3990 ; t:kids
北极绒 男士摇粒绒开衫 XL ; Beijirong Men's Fleece Cardigan XL ; 北极绒 ; 7990 ; int t:seasonal
天堂 一次性雨衣 ; Paradise Disposable Raincoat ; 天堂 ; 990 ;
恒源祥 帆布围裙 ; Hengyuanxiang Canvas Apron ; 恒源祥 ; 1990 ;
""",
    "clothing-socks-underwear": """
浪莎 男士纯棉中筒袜 5双装 ; Langsha Men's Cotton Crew Socks 5 Pairs ; 浪莎 ; 2990 ;
浪莎 女士隐形船袜 5双装 ; Langsha Women's No-Show Socks 5 Pairs ; 浪莎 ; 2490 ;
浪莎 女士丝袜 3双装 ; Langsha Women's Stockings 3 Pairs ; 浪莎 ; 1990 ;
南极人 男士平角内裤 3条装 L ; Nanjiren Men's Boxer Briefs 3-Pack L ; 南极人 ; 3990 ; int
猫人 女士纯棉内裤 3条装 M ; Maniform Women's Cotton Briefs 3-Pack M ; 猫人 ; 3990 ; int
北极绒 男士保暖内衣套装 XL ; Beijirong Men's Thermal Underwear Set XL ; 北极绒 ; 9990 ; int t:seasonal
恒源祥 羊毛袜 2双装 ; Hengyuanxiang Wool Socks 2 Pairs ; 恒源祥 ; 3990 ;
巴拉巴拉 儿童棉袜 5双装 ; Balabala Kids Cotton Socks 5 Pairs ; 巴拉巴拉 ; 1990 ; t:kids
红豆 男士纯棉背心 L ; Hodo Men's Cotton Vest L ; 红豆 ; 2990 ;
""",
}

# Stock thresholds for `each` items by category: (low, high) in units.
EACH_THRESHOLDS = {
    "fresh": (6, 40),
    "meat": (4, 30),
    "dairy-milk": (12, 96),
    "dairy-yogurt": (10, 80),
    "dairy-bakery": (6, 40),
    "staples": (6, 60),
    "snacks-drinks": (24, 240),
    "snacks": (10, 100),
    "household": (5, 50),
    "personal": (4, 40),
    "clothing": (3, 24),
}
# Stock thresholds for `kg` items: (low, high) in grams.
KG_THRESHOLDS = {
    "fresh": (5000, 60000),
    "meat": (3000, 30000),
    "staples": (10000, 100000),
    "snacks": (2000, 15000),
}


def gs1_check_digit(body: str) -> str:
    """GS1 mod-10 check digit (EAN-8, EAN-13, UPC-A): weights 3,1,3,... from the right."""
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return str((10 - total % 10) % 10)


def threshold_for(table: dict[str, tuple[int, int]], cat: str) -> tuple[int, int]:
    if cat in table:
        return table[cat]
    return table[cat.split("-")[0]]


class Barcodes:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.used: set[str] = set()
        self.brand_prefix: dict[str, str] = {}
        self.next_ref: dict[str, int] = {}

    def _take(self, code: str) -> str:
        assert code not in self.used, code
        self.used.add(code)
        return code

    def ean13(self, brand: str) -> str:
        key = brand or "(store-packed)"
        if key not in self.brand_prefix:
            while True:  # a 7-digit GS1 China company prefix 690xxxx-699xxxx
                prefix = "69" + "".join(self.rng.choice("0123456789") for _ in range(5))
                if prefix not in self.brand_prefix.values():
                    break
            self.brand_prefix[key] = prefix
            self.next_ref[key] = self.rng.randrange(10, 900) * 10
        while True:
            self.next_ref[key] += self.rng.randrange(1, 40)
            body = self.brand_prefix[key] + f"{self.next_ref[key]:05d}"
            code = body + gs1_check_digit(body)
            if code not in self.used:
                return self._take(code)

    def ean8(self) -> str:
        while True:
            body = "69" + "".join(self.rng.choice("0123456789") for _ in range(5))
            code = body + gs1_check_digit(body)
            if code not in self.used:
                return self._take(code)

    def upca(self) -> str:
        while True:
            body = "0" + "".join(self.rng.choice("0123456789") for _ in range(10))
            code = body + gs1_check_digit(body)
            if code not in self.used:
                return self._take(code)


def build_items(rng: random.Random) -> list[dict]:
    bc = Barcodes(rng)
    leaves = {c[0] for c in CATEGORIES if c[1]}
    items: list[dict] = []
    kg_plu = 10001
    instore_plu = 30001
    internal = 100001
    for cat, block in ITEMS.items():
        assert cat in leaves, cat
        for line in block.strip().splitlines():
            parts = [p.strip() for p in line.split(";")]
            name_zh, name_en, brand, price = parts[0], parts[1], parts[2], int(parts[3])
            opts = parts[4].split() if len(parts) > 4 else []
            unit = "kg" if "kg" in opts else "each"
            tax = 900 if cat in TAX9_CATEGORIES else 1300
            if "tax9" in opts:
                tax = 900
            if "tax13" in opts:
                tax = 1300
            tags = next((o[2:].split(",") for o in opts if o.startswith("t:")), [])
            plu = next((o[4:] for o in opts if o.startswith("plu:")), "")
            barcodes: list[str] = []
            if unit == "kg":
                if not plu:
                    if kg_plu == 12345:
                        kg_plu += 1
                    plu = str(kg_plu)
                    kg_plu += 1
            elif "instore" in opts:
                plu = str(instore_plu)
                instore_plu += 1
            elif "ean8" in opts:
                barcodes.append(bc.ean8())
            elif "upca" in opts:
                barcodes.append(bc.upca())
            else:
                barcodes.append(bc.ean13(brand))
                if "alt" in opts:
                    barcodes.append(bc.ean13(brand))
                if "int" in opts:
                    barcodes.append(bc._take(f"C{internal}"))
                    internal += 1
            table = KG_THRESHOLDS if unit == "kg" else EACH_THRESHOLDS
            low, high = threshold_for(table, cat)
            if unit == "kg":
                stock = rng.randrange(int(low * 1.5), int(high * 0.8), 100)
            else:
                stock = rng.randrange(int(low * 1.5) + 1, int(high * 0.8))
            if "low" in opts:
                stock = low // 2 if unit == "each" else low // 3 // 100 * 100
            if "high" in opts:
                stock = high + (high // 4 if unit == "each" else 20000)
            if "batch" in opts:
                stock = 0
            items.append({
                "sku": f"SKU{len(items) + 1:05d}",
                "name_zh": name_zh,
                "name_en": name_en,
                "category_id": cat,
                "unit": unit,
                "price": price,
                "tax_rate_bp": tax,
                "barcodes": "|".join(barcodes),
                "plu": plu,
                "brand": brand,
                "tags": "|".join(tags),
                "low_threshold": low,
                "high_threshold": high,
                "initial_stock": stock,
                "_batch": "batch" in opts,
            })
    return items


# Batch profiles: (shelf life days lo, hi), (received days lo, hi), (qty lo, hi) per batch in units;
# weighed (kg) items use KG_BATCH_QTY grams instead.
KG_BATCH_QTY = (3000, 9000)
BATCH_PROFILES = {
    "fresh-eggs": ((30, 45), (-20, -1), (6, 12)),
    "fresh-tofu": ((3, 5), (-2, 0), (6, 12)),
    "meat": ((2, 4), (-2, 0), (6, 20)),
    "meat-deli": ((1, 2), (0, 0), (4, 10)),
    "dairy-milk": ((180, 180), (-90, -5), (12, 48)),
    "dairy-milk-chilled": ((6, 7), (-4, 0), (12, 30)),
    "dairy-yogurt": ((150, 150), (-60, -5), (10, 30)),
    "dairy-yogurt-chilled": ((21, 21), (-19, -1), (10, 30)),
    "dairy-bakery": ((4, 7), (-5, 0), (6, 20)),
    "bakery-instore": ((1, 2), (0, 0), (6, 15)),
    "snacks": ((30, 180), (-60, -3), (10, 40)),
}


def batch_profile(item: dict) -> tuple:
    cat = item["category_id"]
    if "fresh-baked" in item["tags"]:
        return BATCH_PROFILES["bakery-instore"]
    if cat.startswith("meat"):
        return BATCH_PROFILES["meat-deli" if item["unit"] == "each" and item["plu"] else "meat"]
    if cat.startswith("dairy") and "chilled" in item["tags"]:
        return BATCH_PROFILES[cat + "-chilled"]
    if cat in BATCH_PROFILES:
        return BATCH_PROFILES[cat]
    return BATCH_PROFILES[cat.split("-")[0]]


def build_batches(rng: random.Random, items: list[dict]) -> list[dict]:
    batches: list[dict] = []
    lot_no = 1
    for item in items:
        if not item["_batch"]:
            continue
        (s_lo, s_hi), (r_lo, r_hi), (q_lo, q_hi) = batch_profile(item)
        n = rng.choice((1, 2, 2, 3))
        received = sorted(rng.randint(r_lo, r_hi) for _ in range(n))
        for r in received:
            expiry = max(1, r + rng.randint(s_lo, s_hi))
            if item["unit"] == "kg":
                qty = rng.randrange(KG_BATCH_QTY[0], KG_BATCH_QTY[1] + 1, 100)
            else:
                qty = rng.randint(q_lo, q_hi)
            batches.append({"sku": item["sku"], "lot": f"L{lot_no:05d}", "expiry_days": expiry,
                            "qty": qty, "received_days": r})
            lot_no += 1
    # One batch already expired (the silken tofu's oldest lot) for the demo's expiry report.
    tofu = next(i for i in items if i["name_en"].startswith("Zuming Silken Tofu"))
    first = next(b for b in batches if b["sku"] == tofu["sku"])
    first["expiry_days"], first["received_days"] = -1, -4
    if sum(b["sku"] == tofu["sku"] for b in batches) == 1:  # keep some sellable stock too
        at = batches.index(first) + 1
        batches.insert(at, {"sku": tofu["sku"], "lot": f"L{lot_no:05d}", "expiry_days": 3,
                            "qty": 12, "received_days": 0})
    for b in batches:
        b["expiry_days"] = f"{b['expiry_days']:+d}"
        b["received_days"] = f"{b['received_days']:+d}"
    return batches


SURNAMES = list("王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦方白邹孟熊秦邱江尹薛段雷侯龙史陶黎贺顾毛郝龚邵万钱严武戴孔汤")
GIVEN = list("伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超霞平刚桂兰玉华建国红梅志文斌辉鹏飞宇浩然欣怡子涵梓萱雨晨思佳博俊凯婷雪琳晓丹慧颖瑶")
PHONE_PREFIXES = ["130", "131", "132", "133", "135", "136", "137", "139", "150", "151", "152",
                  "153", "155", "156", "157", "158", "159", "180", "181", "182", "183", "185",
                  "186", "187", "188", "189", "191", "193", "195", "198", "199"]


def build_members(rng: random.Random) -> list[dict]:
    n = 72
    tiers = ["gold"] * 12 + ["silver"] * 22 + ["regular"] * 38
    tiers = tiers[:1] + rng.sample(tiers[1:], len(tiers) - 1)
    names: set[str] = set()
    phones = {"13800138000"}
    members = []
    for k in range(1, n + 1):
        while True:
            name = rng.choice(SURNAMES) + "".join(rng.choice(GIVEN) for _ in range(rng.choice((1, 2, 2))))
            if name not in names:
                names.add(name)
                break
        if k == 1:
            phone = "13800138000"
        else:
            while True:
                phone = rng.choice(PHONE_PREFIXES) + f"{rng.randrange(10**8):08d}"
                if phone not in phones:
                    phones.add(phone)
                    break
        tier = tiers[k - 1]
        year = rng.randrange(1948, 2006)
        birthday = "" if rng.random() < 0.2 else f"{year}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        tags = []
        if tier == "gold":
            tags.append("vip")
        if birthday and year < 1962:
            tags.append("elderly")
        if birthday and 1985 <= year <= 1998 and rng.random() < 0.3:
            tags.append("mother-baby")
        for t, p in (("wine", 0.08), ("pet", 0.08), ("fitness", 0.06), ("organic", 0.06)):
            if rng.random() < p:
                tags.append(t)
        if k in (7, 23, 41):
            tags.append("staff")
        if tier == "gold":
            points = rng.randrange(5000, 30000)
        elif tier == "silver":
            points = rng.randrange(1000, 5000)
        else:
            points = rng.randrange(0, 1000)
        balance = 0
        if rng.random() < (0.7 if tier == "gold" else 0.4 if tier == "silver" else 0.15):
            balance = rng.randrange(5000, 50001, 50)
        members.append({
            "member_id": f"M{k:06d}",
            "phone": phone,
            "card_no": f"88{k:08d}",
            "name": name,
            "birthday": birthday,
            "tier": tier,
            "tags": "|".join(tags),
            "points": points,
            "balance": balance,
        })
    # The documented demo member.
    members[0].update({"tier": "gold", "phone": "13800138000", "card_no": "8800000001",
                       "balance": 20000, "points": 5000, "tags": "vip"})
    return members


TIERS = [
    {"tier": "regular", "name_zh": "普通会员", "name_en": "Regular", "discount_bp": 0,
     "points_multiplier_pct": 100, "min_points": 0},
    {"tier": "silver", "name_zh": "银卡会员", "name_en": "Silver", "discount_bp": 500,
     "points_multiplier_pct": 150, "min_points": 1000},
    {"tier": "gold", "name_zh": "金卡会员", "name_en": "Gold", "discount_bp": 1000,
     "points_multiplier_pct": 200, "min_points": 5000},
]

USERS = [
    {"username": "manager", "role": "store_manager", "display_name": "张伟（店长）",
     "password": "manager-demo", "pin": ""},
    {"username": "cashier", "role": "cashier", "display_name": "李娜（收银员）",
     "password": "", "pin": "1234"},
    {"username": "guide", "role": "sales_guide", "display_name": "陈静（导购）",
     "password": "", "pin": "5678"},
    {"username": "region", "role": "region_manager", "display_name": "刘洋（区域经理）",
     "password": "region-demo", "pin": ""},
]


def write_csv(name: str, fields: list[str], rows: list[dict]) -> None:
    with open(HERE / name, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    rng = random.Random(SEED)
    items = build_items(rng)
    batches = build_batches(rng, items)
    members = build_members(rng)
    write_csv("categories.csv", ["category_id", "parent_id", "name_zh", "name_en"],
              [dict(zip(["category_id", "parent_id", "name_zh", "name_en"], c)) for c in CATEGORIES])
    write_csv("items.csv", ["sku", "name_zh", "name_en", "category_id", "unit", "price", "tax_rate_bp",
                            "barcodes", "plu", "brand", "tags", "low_threshold", "high_threshold",
                            "initial_stock"], items)
    write_csv("batches.csv", ["sku", "lot", "expiry_days", "qty", "received_days"], batches)
    write_csv("tiers.csv", ["tier", "name_zh", "name_en", "discount_bp", "points_multiplier_pct",
                            "min_points"], TIERS)
    write_csv("members.csv", ["member_id", "phone", "card_no", "name", "birthday", "tier", "tags",
                              "points", "balance"], members)
    write_csv("users.csv", ["username", "role", "display_name", "password", "pin"], USERS)


if __name__ == "__main__":
    main()
